"""Tenant admin: departments and service points (a county onboards its own), data grants, the read log, and
the onboarding checklist (入驻清单) — a county's own, and for a city administrator its counties' too. Every
change goes through the services, which write the audit entries the checklist names."""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _

from citycard.platform.admin_sites import tenant_admin
from citycard.tenants.departments import services
from citycard.tenants.departments.models import DataGrant, DataRead, Department, Onboarding, ServicePoint
from citycard.tenants.departments.selectors import admin_hosts, onboarding_overview
from citycard.tenants.departments.services import onboarding_publish
from citycard.terminal_kit.beijing import BEIJING


def _actor(request) -> str:
    return f"user:{request.user.username}"


class ServicePointInline(admin.TabularInline):
    """A department's service points, read here; each opens (and changes) on its own page."""

    model = ServicePoint
    extra = 0
    fields = ("code", "name", "address", "hours", "services", "active")
    readonly_fields = fields
    show_change_link = True
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Department, site=tenant_admin)
class DepartmentAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "kind", "contact")
    list_filter = ("kind",)
    search_fields = ("code", "name")
    inlines = [ServicePointInline]

    def get_readonly_fields(self, request, obj=None):
        return ("code",) if obj else ()

    def get_inlines(self, request, obj):
        return self.inlines if obj else []

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if change:
            services.department_update(
                code=obj.code,
                kind=data["kind"],
                name=data["name"],
                contact=data["contact"],
                actor=_actor(request),
            )
            return
        created = services.department_create(
            code=data["code"],
            kind=data["kind"],
            name=data["name"],
            contact=data["contact"],
            actor=_actor(request),
        )
        obj.pk = created.pk


@admin.register(ServicePoint, site=tenant_admin)
class ServicePointAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "department", "address", "hours", "active")
    list_filter = ("active", "department")
    search_fields = ("code", "name", "address")

    def get_readonly_fields(self, request, obj=None):
        return ("code", "department") if obj else ()

    def has_delete_permission(self, request, obj=None):
        return False  # close it (active off): the checklist and the read log keep naming it

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if change:
            services.service_point_update(
                code=obj.code,
                name=data["name"],
                address=data["address"],
                hours=data["hours"],
                services=data["services"],
                active=data["active"],
                actor=_actor(request),
            )
            return
        created = services.service_point_create(
            department=data["department"].code,
            code=data["code"],
            name=data["name"],
            address=data["address"],
            hours=data["hours"],
            services=data["services"],
            actor=_actor(request),
        )
        obj.pk = created.pk


@admin.register(DataGrant, site=tenant_admin)
class DataGrantAdmin(admin.ModelAdmin):
    list_display = ("department", "fields", "purpose", "valid_from", "valid_to", "revoked_at", "granted_by")
    list_filter = ("department",)
    readonly_fields = ("revoked_at", "granted_by", "granted_at")
    actions = ["revoke_selected"]

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request, obj)  # grants are revoked, not edited

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        created = services.data_grant_create(
            department=data["department"].code,
            fields=data["fields"],
            purpose=data["purpose"],
            valid_from=data["valid_from"],
            valid_to=data.get("valid_to"),
            actor=f"user:{request.user.username}",
        )
        obj.pk = created.pk

    @admin.action(description=_("Revoke the selected grants"))
    def revoke_selected(self, request, queryset):
        for grant in queryset.filter(revoked_at__isnull=True):
            services.data_grant_revoke(grant_id=grant.pk, actor=f"user:{request.user.username}")


@admin.register(DataRead, site=tenant_admin)
class DataReadAdmin(admin.ModelAdmin):
    """The read log (谁使用、谁负责): filter by cardholder id to see who read a person's data."""

    list_display = ("at", "reader", "department", "cardholder_id", "fields", "reason")
    list_filter = ("department",)
    search_fields = ("=cardholder_id", "reader")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Onboarding, site=tenant_admin)
class OnboardingAdmin(admin.ModelAdmin):
    """The onboarding checklist (入驻清单): each step, done or not, who did it and when, who does it and a
    link to where. A county officer sees the county's; a city administrator the city's and each county's
    (the links then lead to the county's own site, where its officers work)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_permission(request):
            raise PermissionDenied
        here = connection.tenant
        if here.kind == "county":  # what the county's officers see now is what its city sees next
            onboarding_publish(tenant=here, actor=f"user:{request.user.username}")
        overview = onboarding_overview(tenant=here)
        domains = admin_hosts(tenant=here)
        port = request.get_port()
        suffix = "" if port in ("80", "443") else f":{port}"

        def link(item) -> str:
            if not item.admin_path:
                return ""
            if item.admin_tenant == here.code:
                return item.admin_path
            domain = domains.get(item.admin_tenant)
            return f"{request.scheme}://{domain}{suffix}{item.admin_path}" if domain else ""

        tenants = [
            {
                "tenant": o.tenant,
                "own": o.own,
                "problem": o.problem,
                "published_at": o.published_at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M")
                if o.published_at
                else "",
                "done": len(o.items) - len(o.missing),
                "total": len(o.items),
                "missing": [str(i.label) for i in o.missing],
                "steps": [
                    {
                        "item": i,
                        "when": i.done_at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M") if i.done_at else "",
                        "link": link(i),
                        "elsewhere": bool(i.admin_tenant) and i.admin_tenant != here.code,
                    }
                    for i in o.items
                ],
            }
            for o in overview
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Onboarding checklist"),
            "tenants": tenants,
            "is_city": here.kind != "county",
        }
        return TemplateResponse(request, "admin/departments/onboarding.html", context)
