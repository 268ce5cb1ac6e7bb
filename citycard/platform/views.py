"""The landing pages: the platform's (list of tenants) and each tenant's (who it is, where it roams)."""

from __future__ import annotations

from django.db import connection
from django.http import JsonResponse
from django.shortcuts import render

from citycard.platform.audit.models import AuditEntry
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
    """Machine-readable status of whichever schema this host routes to."""
    tenant = request.tenant
    recent = list(AuditEntry.objects.order_by("-seq").values("seq", "action", "object_id")[:20])
    return JsonResponse(
        {
            "tenant": tenant.code,
            "kind": tenant.kind,
            "schema": connection.schema_name,
            "audit_entries": AuditEntry.objects.count(),
            "recent": recent,
        },
        json_dumps_params={"ensure_ascii": False},
    )
