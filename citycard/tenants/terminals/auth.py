"""Terminals' requests without a body (the hotlist download): signed by the terminal's registered key.

A batch upload carries its own signature (ingest/signature.py). A GET has no body to sign, so the terminal signs
what identifies the request (terminal_kit.signing.request_signing_bytes: method, path with its query,
tenant, key id, time) and sends it in three headers. The back office answers only a registered, active
terminal of this tenant, whose key is current (or within its rotation overlap) and whose clock agrees
with ours within TERMINAL_MAX_CLOCK_SKEW_S. A replay inside that window gets the same answer again:
these requests only read.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from functools import wraps

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from citycard.platform.models import Tenant
from citycard.tenants.terminals.models import Terminal, TerminalKey
from citycard.terminal_kit.signing import (
    KEY_HEADER,
    SIGNATURE_HEADER,
    TIME_HEADER,
    SignatureError,
    b64decode,
    request_signing_bytes,
)


class TerminalRequestRefused(Exception):
    def __init__(self, message: str, *, code: str, status: int = 401) -> None:
        super().__init__(message)
        self.message, self.code, self.status = message, code, status


def terminal_request_verify(
    *, tenant: Tenant, method: str, path: str, headers: Mapping[str, str], now: dt.datetime
) -> Terminal:
    """The terminal that signed this request, or TerminalRequestRefused naming what is wrong."""
    key_id, at_text, signature = (headers.get(h) for h in (KEY_HEADER, TIME_HEADER, SIGNATURE_HEADER))
    if not (key_id and at_text and signature):
        raise TerminalRequestRefused(
            str(
                _("sign the request with the terminal's key: headers %(headers)s (docs/terminal-protocol.md)")
                % {"headers": ", ".join((KEY_HEADER, TIME_HEADER, SIGNATURE_HEADER))}
            ),
            code="unsigned",
        )
    try:
        at = dt.datetime.fromisoformat(at_text)
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise TerminalRequestRefused(
            str(_("%(header)s must be an ISO 8601 time with its offset") % {"header": TIME_HEADER}),
            code="malformed",
        )
    skew = settings.TERMINAL_MAX_CLOCK_SKEW_S
    if abs((now - at).total_seconds()) > skew:
        raise TerminalRequestRefused(
            str(
                _(
                    "the request was signed at %(at)s, more than %(skew)s s from the back office's clock; "
                    "set the terminal's clock"
                )
                % {"at": at_text, "skew": skew}
            ),
            code="clock_skew",
        )
    key = TerminalKey.objects.select_related("terminal").filter(key_id=key_id).first()
    if key is None:
        raise TerminalRequestRefused(
            str(
                _("no terminal of %(tenant)s signs with key %(key)r") % {"tenant": tenant.code, "key": key_id}
            ),
            code="unknown_terminal",
        )
    if key.retired_at is not None and (key.verify_until is None or key.verify_until <= now):
        raise TerminalRequestRefused(
            str(_("key %(key)r was rotated out and its overlap window has ended") % {"key": key_id}),
            code="key_expired",
        )
    signed = request_signing_bytes(method=method, path=path, tenant=tenant.code, key_id=key_id, at=at_text)
    try:
        Ed25519PublicKey.from_public_bytes(bytes(key.public_key)).verify(
            b64decode(signature, what="signature"), signed
        )
    except (InvalidSignature, SignatureError):
        raise TerminalRequestRefused(
            str(_("the signature by %(key)r does not match this request") % {"key": key_id}),
            code="bad_signature",
        ) from None
    if not key.terminal.is_active:
        raise TerminalRequestRefused(
            str(
                _("terminal %(terminal)s is suspended: %(reason)s")
                % {"terminal": key.terminal.terminal_id, "reason": key.terminal.status_reason}
            ),
            code="terminal_suspended",
            status=403,
        )
    return key.terminal


def terminal_signed(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A view for terminals only: no session, a valid terminal signature instead (``request.terminal``)."""

    @login_not_required  # authenticated here, by the terminal's signature
    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            request.terminal = terminal_request_verify(
                tenant=request.tenant,
                method=request.method or "GET",
                path=request.get_full_path(),
                headers=request.headers,
                now=timezone.now(),
            )
        except TerminalRequestRefused as exc:
            return JsonResponse(
                {"error": {"code": exc.code, "message": exc.message}},
                status=exc.status,
                json_dumps_params={"ensure_ascii": False},
            )
        return view(request, *args, **kwargs)

    return wrapped
