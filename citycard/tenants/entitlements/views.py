"""Terminal routes of entitlements on a tenant's domain (docs/entitlements.md):

* ``GET /terminal/v1/entitlements[?since=N]``: the tenant-signed offline list, full or the delta since
  the version the terminal holds (304 when it is up to date); card numbers and type codes only, no names.
* ``POST /terminal/v1/entitlement-uses``: a terminal's signed batch of uses it accepted offline; the
  answer is tenant-signed and lists the use keys taken, so the terminal stops sending them.
"""

from __future__ import annotations

import json

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from citycard.platform.errors import DomainError
from citycard.platform.keys import tenant_sign
from citycard.platform.terminal_answers import json_error
from citycard.tenants.entitlements.acceptance import entitlement_uses_upload
from citycard.tenants.entitlements.selectors import entitlement_list_document, entitlement_list_version
from citycard.tenants.terminals.auth import terminal_signed

MAX_USES_BYTES = 2 * 1024 * 1024


def _json(document: dict) -> HttpResponse:
    body = json.dumps(document, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return HttpResponse(body, content_type="application/json")


@require_GET
@terminal_signed
def entitlement_list_download(request: HttpRequest) -> HttpResponse:
    """The signed offline entitlement list (离线权益名单), like the hotlist download."""
    since_text = request.GET.get("since")
    since = None
    if since_text not in (None, ""):
        if not (since_text.isascii() and since_text.isdigit()) or len(since_text) > 18:
            return JsonResponse(
                {
                    "error": {
                        "code": "invalid",
                        "message": str(_("since must be a non-negative whole version number")),
                    }
                },
                status=400,
            )
        since = int(since_text)
        if since == entitlement_list_version():
            return HttpResponse(status=304)
    return _json(entitlement_list_document(since=since))


@login_not_required  # no session: the batch is verified against its terminal's Ed25519 key
@csrf_exempt
@require_POST
def entitlement_uses_receive(request: HttpRequest) -> HttpResponse:
    """Take a terminal's signed uses; answer with the tenant-signed list of use keys taken."""
    if (request.content_type or "") != "application/json":
        return json_error(
            415, "unsupported_media_type", str(_("send the uses as Content-Type: application/json"))
        )
    body = request.read(MAX_USES_BYTES + 1)
    if len(body) > MAX_USES_BYTES:
        return json_error(
            413, "too_large", str(_("the batch is over %(max)s bytes") % {"max": MAX_USES_BYTES})
        )
    try:
        document = json.loads(body)
        result = entitlement_uses_upload(document=document)
    except ValueError:
        return json_error(400, "malformed", str(_("the body is not a JSON document")))
    except DomainError as exc:
        return json_error(400, exc.code, str(exc))
    ack = {"kind": "entitlement-uses-ack", "tenant": request.tenant.code, **result}
    return _json(tenant_sign(tenant=request.tenant, payload=ack))
