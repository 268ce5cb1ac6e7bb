"""Every answer on the terminal routes (``/terminal/…`` on a tenant's domain) is JSON with a code.

Terminals are machines: they read ``{"error": {"code", "message"}}`` and decide by the status whether to
send the same batch again (5xx; 503 after ``Retry-After``) or to stop and report (4xx). Some requests are
answered before a terminal view runs, or not by it: the tenant routing (unknown host, suspended tenant),
URL resolution (no such route), method decorators (405), Django itself (a bad Host header), and any
exception, which Django turns into an HTML 500. ``TerminalAnswersMiddleware``, outermost, gives each of
those answers the JSON form when the path is under ``TERMINAL_URL_PREFIX``, and tells an outage of the
database or the broker (503 ``unavailable`` with ``Retry-After``) from a bug (500 ``internal``, with the
request id it was logged under). Other routes keep Django's answers and handlers.
"""

from __future__ import annotations

import logging
import sys
import uuid
from typing import Any

import psycopg2
from django.conf import settings
from django.core.signals import got_request_exception
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from kombu.exceptions import OperationalError as BrokerOperationalError

log = logging.getLogger(__name__)

# Transient: the request may well succeed later, unchanged (connection lost or refused, server shutting
# down, serialisation failure, statement timeout: psycopg2 raises all of these as OperationalError).
OUTAGES: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    psycopg2.OperationalError,
    psycopg2.InterfaceError,
    BrokerOperationalError,
)

# The code of an answer that came without one, by status.
_CODES = {
    400: "bad_request",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}
_MESSAGES = {
    400: "the request could not be read (its Host header or its form)",
    403: "this request is not allowed here",
    404: (
        "nothing answers at this address: the host names no tenant, or the path no terminal route"
        " (POST /terminal/v1/batches, GET /terminal/v1/hotlist)"
    ),
}
_FAILURE = "_terminal_failure"  # the request attribute where an exception is kept for the answer
_CHUNK = 64 * 1024


def json_error(status: int, code: str, message: str, **extra: Any) -> JsonResponse:
    """``{"error": {"code", "message", …extra}}``, the one error form of the terminal routes."""
    response = JsonResponse(
        {"error": {"code": code, "message": message, **extra}},
        status=status,
        json_dumps_params={"ensure_ascii": False},
    )
    response.error_code = code  # the outcome of the request's log line (observability/requests.py)
    return response


def _keep_failure(sender: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
    """Django's signal for an exception it is about to answer with a 500; sent inside its ``except``."""
    if request is not None and hasattr(request, _FAILURE):
        setattr(request, _FAILURE, sys.exc_info()[1])


class TerminalAnswersMiddleware:
    """Put first in MIDDLEWARE, so it also sees what the tenant routing answers."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self.prefix = settings.TERMINAL_URL_PREFIX
        got_request_exception.connect(_keep_failure, dispatch_uid="terminal-answers-failure")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        if not (path.startswith(self.prefix) or path == self.prefix.rstrip("/")):
            return self.get_response(request)
        # The id of the request's log line (observability/requests.py), when that middleware runs.
        request_id = getattr(request, "request_id", None) or uuid.uuid4().hex
        setattr(request, _FAILURE, None)
        response = self.get_response(request)
        if not getattr(request, "_read_started", False):
            _drain(request)
        failure = getattr(request, _FAILURE)
        if failure is not None:
            response = _failure_answer(failure, request_id, path)
        elif response.status_code >= 400 and not response.get("Content-Type", "").startswith(
            "application/json"
        ):
            response = _as_json(request, response)
        response["X-Request-Id"] = request_id
        return response


def _drain(request: HttpRequest) -> None:
    """Read and drop a body nobody read (a refusal before the view read it: 413, 415, 405, 404…), up to
    four batch limits: a server that closes a connection with unread data sends a reset, and the client
    may see that instead of the answer."""
    declared = request.META.get("CONTENT_LENGTH") or ""
    left = 0
    if declared.isascii() and declared.isdigit() and len(declared) < 19:
        left = min(int(declared), 4 * settings.TERMINAL_BATCH_MAX_BYTES)
    try:
        while left > 0 and (chunk := request.read(min(_CHUNK, left))):
            left -= len(chunk)
    except OSError:  # the client is gone: nothing to keep the connection for
        pass


def _failure_answer(failure: BaseException, request_id: str, path: str) -> HttpResponse:
    if isinstance(failure, OUTAGES):
        what = "message broker" if isinstance(failure, BrokerOperationalError) else "database"
        wait = settings.TERMINAL_RETRY_AFTER_S
        log.warning("terminal request %s to %s: the %s is unavailable (%s)", request_id, path, what, failure)
        response = json_error(
            503,
            "unavailable",
            f"the {what} is unavailable; send the same request again in {wait} s (a resent batch gets the answer"
            " it would have got)",
        )
        response["Retry-After"] = str(wait)
        return response
    log.error("terminal request %s to %s failed", request_id, path, exc_info=failure)
    return json_error(
        500,
        "internal",
        f"the server failed on this request (logged as {request_id}); send it again later",
        request_id=request_id,
    )


def _as_json(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """An answer in HTML or plain text as the JSON error of its status; a plain-text answer (the tenant
    routing's) keeps its first line as the message."""
    status = response.status_code
    message = ""
    if response.get("Content-Type", "").startswith("text/plain") and not response.streaming:
        message = response.content.decode(errors="replace").strip().split("\n", 1)[0][:300]
    if status == 405:
        message = f"{request.method} is not allowed here; use {response.get('Allow', 'another method')}"
    code = _CODES.get(status, "internal" if status >= 500 else f"http_{status}")
    answer = json_error(status, code, message or _MESSAGES.get(status, response.reason_phrase))
    if response.has_header("Allow"):
        answer["Allow"] = response["Allow"]
    return answer
