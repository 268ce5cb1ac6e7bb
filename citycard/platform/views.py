"""The landing pages: the platform's (list of tenants) and each tenant's (who it is, where it roams);
the site's status; liveness and readiness; the Prometheus metrics.

Every view here but the health checks, the published keys and the metrics (which checks its caller
itself) is for signed-in staff of the host's site only (middleware.SiteAccessMiddleware): a new view is
closed until it is deliberately opened.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from citycard.platform.audit.selectors import audit_count, audit_recent
from citycard.platform.health import OK, readiness
from citycard.platform.key_publication import keys_document
from citycard.platform.models import PLATFORM_ROLES
from citycard.platform.observability import metrics as metrics_module
from citycard.platform.observability.addresses import address_allowed
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


def metrics_refusal(request: HttpRequest) -> str | None:
    """Why ``request`` may not read /metrics, or None: it may when a platform user (operator, clearing
    staff) is signed in, or when it comes straight from an address in ``CITYCARD_METRICS_ALLOW``. A request
    that came through a proxy (it carries X-Forwarded-For or Forwarded) is judged by its session only:
    its REMOTE_ADDR is the proxy's, which may well be loopback."""
    forwarded = "X-Forwarded-For" in request.headers or "Forwarded" in request.headers
    if not forwarded and address_allowed(request.META.get("REMOTE_ADDR", ""), settings.METRICS_ALLOW):
        return None
    user = request.user
    if (
        user.is_authenticated
        and user.is_active
        and user.is_staff
        and getattr(user, "role", None) in PLATFORM_ROLES
        and getattr(user, "tenant_id", None) is None
    ):
        return None
    return (
        "/metrics is for the platform's staff, signed in on the platform's site, and for scrapers at an"
        ' address in CITYCARD_METRICS_ALLOW (docs/operations.md, "Metrics")\n'
    )


@login_not_required  # its own check: platform staff or an allowed address (metrics_refusal)
@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition of every process of this machine (observability/metrics.py)."""
    refusal = metrics_refusal(request)
    if refusal is not None:
        return HttpResponse(refusal, status=403, content_type="text/plain; charset=utf-8")
    body, content_type = metrics_module.render()
    return HttpResponse(body, content_type=content_type)
