"""The landing pages: the platform's (list of tenants) and each tenant's (who it is, where it roams);
the site's status; liveness and readiness.

Every view here but the health checks and the published keys is for signed-in staff of the host's site only
(middleware.SiteAccessMiddleware): a new view is closed until it is deliberately opened.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from citycard.platform.audit.selectors import audit_count, audit_recent
from citycard.platform.health import OK, readiness
from citycard.platform.key_publication import keys_document
from citycard.platform.selectors import network_members, tenant_list, tenant_networks
from citycard.platform.services import NETWORKS


def platform_home(request):
    networks = {code: network_members(network_code=code) for code in NETWORKS}
    return render(
        request,
        "citycard/platform_home.html",
        {"tenants": tenant_list(), "networks": networks, "port": request.get_port()},
    )


def tenant_home(request):
    tenant = request.tenant
    return render(
        request,
        "citycard/tenant_home.html",
        {
            "tenant": tenant,
            "networks": tenant_networks(tenant=tenant),
            "counties": tenant.counties.order_by("division_code"),
        },
    )


def status(request):
    """Machine-readable status of the site this host routes to, for its own staff: its audit log only."""
    tenant = request.tenant
    return JsonResponse(
        {
            "tenant": tenant.code,
            "kind": tenant.kind,
            "schema": connection.schema_name,
            "audit_entries": audit_count(),
            "recent": audit_recent(limit=20),
        },
        json_dumps_params={"ensure_ascii": False},
    )


@login_not_required  # liveness carries no data
@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. Touches neither the database nor the broker."""
    return JsonResponse({"status": "ok"})


@login_not_required  # readiness names only what is down, never any data
@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: 200 when the database and the broker are reachable, else 503 naming which is down."""
    checks = readiness()
    ready = all(state == OK for state in checks.values())
    return JsonResponse(checks, status=200 if ready else 503)


@login_not_required  # public keys only, signed by the platform: a terminal reads them without an account
@require_GET
def citycard_keys(request: HttpRequest) -> JsonResponse:
    """``/.well-known/citycard-keys.json``: the keys this site's terminals verify with (key_publication.py)."""
    response = JsonResponse(keys_document(tenant=request.tenant), json_dumps_params={"ensure_ascii": False})
    response["Cache-Control"] = "public, max-age=300"
    return response
