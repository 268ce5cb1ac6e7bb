"""The hotlist download on a tenant's domain: ``GET /terminal/v1/hotlist[?since=N]`` (docs/tenants.md).

It serves what a terminal of the tenant must block: the tenant's own hotlist (its city's, for a county)
and the network hotlist from its inbox, as one versioned list (exchange.terminal_hotlist). Only the
tenant's own terminals get it: each request is signed with a registered terminal's key
(terminals.auth), since the list names the card numbers of lost and stolen cards."""

from __future__ import annotations

import json

from django.http import HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from citycard.platform.keys import tenant_sign
from citycard.tenants.exchange.terminal_hotlist import terminal_hotlist_payload, terminal_hotlist_refresh
from citycard.tenants.terminals.auth import terminal_signed


@require_GET
@terminal_signed
def hotlist_download(request):
    """The tenant-signed hotlist: full, or the delta since the version the terminal holds.

    304 when the terminal is up to date. The list carries card numbers only (no personal data)."""
    since_text = request.GET.get("since")
    since: int | None = None
    if since_text not in (None, ""):
        # ASCII digits only ("²" is a digit to str.isdigit, not to int) and few of them (int() refuses
        # thousands): both were a 500.
        if not (since_text.isascii() and since_text.isdigit()) or len(since_text) > 18:
            return JsonResponse(
                {
                    "error": {
                        "code": "invalid",
                        "message": "since must be a non-negative whole version number (at most 18 digits)",
                    }
                },
                status=400,
            )
        since = int(since_text)
        if since == terminal_hotlist_refresh():
            return HttpResponse(status=304)
    payload = {**terminal_hotlist_payload(since=since), "tenant": request.tenant.code}
    document = tenant_sign(tenant=request.tenant, payload=payload)
    body = json.dumps(document, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return HttpResponse(body, content_type="application/json")
