from django.contrib import admin

from citycard.platform.admin_sites import tenant_admin
from citycard.tenants.exchange.models import InboxMessage, OutboxMessage, SeenCounter


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(OutboxMessage, site=tenant_admin)
class OutboxMessageAdmin(_ReadOnly):
    list_display = ("message_id", "kind", "record_count", "state", "created_at", "collected_at")
    list_filter = ("kind", "state")
    search_fields = ("message_id",)


@admin.register(InboxMessage, site=tenant_admin)
class InboxMessageAdmin(_ReadOnly):
    list_display = ("message_id", "kind", "sender", "received_at")
    list_filter = ("kind",)
    search_fields = ("message_id",)


@admin.register(SeenCounter, site=tenant_admin)
class SeenCounterAdmin(_ReadOnly):
    list_display = ("card_no", "card_counter", "record_id", "first_seen_at")
    search_fields = ("card_no", "record_id")
