"""The two admin sites: the platform's (on the base domain) and a tenant's (on its own domain).

A platform user signs in only on the platform site; a tenant user only on its own tenant's site, and
only while that tenant is active. What each may see there follows its role (see roles.py).
"""

from __future__ import annotations

from django.contrib.admin import AdminSite
from django.db import connection

from citycard.platform.models import PLATFORM_ROLES, TENANT_ROLES


def _current_tenant(request):
    return getattr(request, "tenant", None) or getattr(connection, "tenant", None)


class PlatformAdminSite(AdminSite):
    site_header = "CityCard Interop · platform"
    site_title = "CityCard platform"
    index_title = "Tenants, roaming networks and clearing"

    def has_permission(self, request) -> bool:
        user = request.user
        tenant = _current_tenant(request)
        return bool(
            user.is_active
            and user.is_staff
            and getattr(user, "tenant_id", None) is None
            and getattr(user, "role", None) in PLATFORM_ROLES
            and tenant is not None
            and tenant.schema_name == "public"
        )


class TenantAdminSite(AdminSite):
    site_title = "CityCard"
    index_title = "Citizen-card administration"

    def has_permission(self, request) -> bool:
        user = request.user
        tenant = _current_tenant(request)
        return bool(
            user.is_active
            and user.is_staff
            and tenant is not None
            and tenant.schema_name != "public"
            and getattr(user, "role", None) in TENANT_ROLES
            and user.tenant_id == tenant.pk
            and tenant.is_active
        )

    def each_context(self, request):
        context = super().each_context(request)
        tenant = _current_tenant(request)
        if tenant is not None and tenant.schema_name != "public":
            context["site_header"] = f"{tenant.name_zh} 市民卡 · {tenant.name_en}"
        return context


platform_admin = PlatformAdminSite(name="platform_admin")
tenant_admin = TenantAdminSite(name="tenant_admin")
