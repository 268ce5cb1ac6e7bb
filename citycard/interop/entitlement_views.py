"""``POST /terminal/v1/entitlement-check`` on a tenant's domain: a service point's terminal asks online
"may this card or citizen code use this service now?" (在线核验), its request signed with its Ed25519 key
like a batch of uses; the answer is tenant-signed (docs/terminal-protocol.md, docs/entitlements.md).
In the interop layer because a visitor's card is answered from its home tenant's signed answer."""

from __future__ import annotations

import json

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from citycard.interop.entitlements import acceptance_terminal_check
from citycard.platform.errors import DomainError
from citycard.platform.terminal_answers import json_error

MAX_CHECK_BYTES = 8 * 1024


@login_not_required  # no session: the request is verified against its terminal's Ed25519 key
@csrf_exempt
@require_POST
def entitlement_check(request: HttpRequest) -> HttpResponse:
    """Decide a terminal's signed check; answer with the tenant-signed decision."""
    if (request.content_type or "") != "application/json":
        return json_error(
            415, "unsupported_media_type", str(_("send the check as Content-Type: application/json"))
        )
    body = request.read(MAX_CHECK_BYTES + 1)
    if len(body) > MAX_CHECK_BYTES:
        return json_error(
            413, "too_large", str(_("a check is at most %(max)s bytes") % {"max": MAX_CHECK_BYTES})
        )
    try:
        answer = acceptance_terminal_check(document=json.loads(body))
    except ValueError:
        return json_error(400, "malformed", str(_("the body is not a JSON document")))
    except DomainError as exc:
        status = 401 if exc.code == "bad_signature" else 403 if exc.code == "not_allowed" else 400
        return json_error(status, exc.code, str(exc))
    payload = json.dumps(answer, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return HttpResponse(payload, content_type="application/json")
