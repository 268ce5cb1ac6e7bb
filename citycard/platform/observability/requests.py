"""One log line per request, the HTTP metrics, the request id.

``RequestLogMiddleware`` (first in MIDDLEWARE: it sees every answer, the tenant routing's and the terminal
routes' too) logs to ``citycard.request``, at INFO (WARNING for a 5xx)::

    {"time": "...", "level": "INFO", "logger": "citycard.request",
     "message": "POST /terminal/v1/batches 200 stored 18.2 ms tenant=hangzhou terminal=HZ-BUS-0001 request=6f1c…",
     "method": "POST", "path": "/terminal/v1/batches", "status": 200, "outcome": "stored", "duration_ms": 18.2,
     "tenant": "hangzhou", "terminal": "HZ-BUS-0001", "request_id": "6f1c…"}

The path never has its query string (a search for a name or an ID number would be in it), the line never a
body. Who made the request is an id: ``user`` (a signed-in user's number, only when the request looked at
its session anyway), ``api_key`` (the key id, not the secret) or ``terminal`` (the terminal id of a
verified batch). Views add these and the outcome code with :func:`request_note`; otherwise the outcome is
the error code of a JSON error answer (``response.error_code``) or is named from the status.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from django.http import HttpRequest, HttpResponse
from django.utils.functional import empty

from citycard.platform.observability import metrics
from citycard.platform.observability.logs import request_id_var

log = logging.getLogger("citycard.request")

_NOTE = "_citycard_log_fields"
# A request id a proxy in front set (nginx's $request_id, a load balancer's trace id): kept if it is plain.
_GOOD_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")
_OUTCOMES = {
    301: "redirect",
    302: "redirect",
    304: "not_modified",
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    429: "rate_limited",
    503: "unavailable",
}


def request_note(request: HttpRequest, **fields: str | int) -> None:
    """Add to the request's log line: ``outcome=``, ``api_key=``, ``terminal=`` (ids and codes only)."""
    request.__dict__.setdefault(_NOTE, {}).update(fields)


def _outcome(status: int, response: HttpResponse) -> str:
    code = getattr(response, "error_code", None)
    if code:
        return str(code)
    if 200 <= status < 300:
        return "ok"
    return _OUTCOMES.get(status, "internal" if status >= 500 else f"http_{status}")


def _user_id(request: HttpRequest) -> int | None:
    """The signed-in user's id, if the request loaded its user (never loaded here: no query, no session
    read for a request that did not need one)."""
    user = request.__dict__.get("user")
    if user is None or getattr(user, "_wrapped", None) is empty:
        return None
    return user.pk if user.is_authenticated else None


class RequestLogMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-Id", "")
        request_id = incoming if _GOOD_ID.fullmatch(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        token = request_id_var.set(request_id)
        start = time.perf_counter()
        response = None
        try:
            response = self.get_response(request)
            response.setdefault("X-Request-Id", request_id)
            return response
        finally:
            try:
                self._log(request, response, (time.perf_counter() - start) * 1000)
            finally:
                request_id_var.reset(token)

    def _log(self, request: HttpRequest, response: HttpResponse | None, duration_ms: float) -> None:
        status = response.status_code if response is not None else 500
        metrics.HTTP_REQUESTS.labels(metrics.status_class(status)).inc()
        notes = request.__dict__.get(_NOTE, {})
        outcome = notes.get("outcome") or (_outcome(status, response) if response is not None else "internal")
        fields: dict = {
            "method": request.method,
            "path": request.path,
            "status": status,
            "outcome": outcome,
            "duration_ms": round(duration_ms, 1),
            "request_id": request.request_id,
        }
        tenant = getattr(request, "tenant", None)
        if tenant is not None:
            fields["tenant"] = tenant.schema_name
        user_id = _user_id(request)
        if user_id is not None:
            fields["user"] = user_id
        terminal = getattr(request.__dict__.get("terminal"), "terminal_id", None)  # a signed request's
        if terminal:
            fields["terminal"] = terminal
        fields.update((k, v) for k, v in notes.items() if k != "outcome")
        who = " ".join(f"{k}={fields[k]}" for k in ("tenant", "user", "api_key", "terminal") if k in fields)
        log.log(
            logging.WARNING if status >= 500 else logging.INFO,
            "%s %s %s %s %.1f ms%s request=%s",
            request.method,
            request.path,
            status,
            outcome,
            duration_ms,
            f" {who}" if who else "",
            request.request_id,
            extra={"fields": fields},
        )
