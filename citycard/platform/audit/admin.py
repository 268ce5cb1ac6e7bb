"""The audit log, read-only, on the platform admin and on every tenant admin."""

from django.contrib import admin

from citycard.platform.admin_sites import platform_admin, tenant_admin
from citycard.platform.audit.models import AuditEntry


class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ("seq", "at", "actor", "action", "object_type", "object_id")
    list_filter = ("action", "object_type")
    search_fields = ("object_id", "actor", "action")
    readonly_fields = [f.name for f in AuditEntry._meta.fields]
    ordering = ("-seq",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


platform_admin.register(AuditEntry, AuditEntryAdmin)
tenant_admin.register(AuditEntry, AuditEntryAdmin)
