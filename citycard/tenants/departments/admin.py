"""Tenant admin: departments and service points (a county onboards its own), data grants, the read log."""

from __future__ import annotations

from django.contrib import admin

from citycard.platform.admin_sites import tenant_admin
from citycard.tenants.departments import services
from citycard.tenants.departments.models import DataGrant, DataRead, Department, ServicePoint


class ServicePointInline(admin.TabularInline):
    model = ServicePoint
    extra = 0
    fields = ("code", "name", "address", "hours", "services", "active")


@admin.register(Department, site=tenant_admin)
class DepartmentAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "kind", "contact")
    list_filter = ("kind",)
    search_fields = ("code", "name")
    inlines = [ServicePointInline]


@admin.register(ServicePoint, site=tenant_admin)
class ServicePointAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "department", "address", "hours", "active")
    list_filter = ("active", "department")
    search_fields = ("code", "name", "address")


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

    @admin.action(description="Revoke the selected grants")
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
