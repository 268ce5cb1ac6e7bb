from django.contrib import admin

from citycard.platform.admin_sites import ReadOnlyAdmin, tenant_admin
from citycard.tenants.exchange.models import InboxMessage, OutboxMessage, SeenCounter


@admin.register(OutboxMessage, site=tenant_admin)
class OutboxMessageAdmin(ReadOnlyAdmin):
    list_display = ("message_id", "kind", "record_count", "state", "created_at", "collected_at")
    list_filter = ("kind", "state")
    search_fields = ("message_id",)


@admin.register(InboxMessage, site=tenant_admin)
class InboxMessageAdmin(ReadOnlyAdmin):
    list_display = ("message_id", "kind", "sender", "received_at")
    list_filter = ("kind",)
    search_fields = ("message_id",)


@admin.register(SeenCounter, site=tenant_admin)
class SeenCounterAdmin(ReadOnlyAdmin):
    list_display = ("card_no", "card_counter", "record_id", "first_seen_at")
    search_fields = ("card_no", "record_id")
