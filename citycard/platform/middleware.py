"""Tenant routing by host name, refusing suspended tenants."""

from __future__ import annotations

from django.http import HttpResponse
from django_tenants.middleware.main import TenantMainMiddleware


class TenantMiddleware(TenantMainMiddleware):
    """django-tenants' routing (``<code>.<base domain>`` runs in that tenant's schema), plus status."""

    def process_request(self, request):
        response = super().process_request(request)
        if response is not None:
            return response
        tenant = request.tenant
        if not tenant.is_platform and not tenant.is_active:
            return HttpResponse(
                f"{tenant.name_en} ({tenant.code}) is suspended on this platform: {tenant.status_reason}\n",
                status=403,
                content_type="text/plain; charset=utf-8",
            )
        return None

    def no_tenant_found(self, request, hostname):
        return HttpResponse(
            f"No citizen-card tenant answers on {hostname}.\n",
            status=404,
            content_type="text/plain; charset=utf-8",
        )
