from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from citycard.platform.admin_sites import ReadOnlyAdmin, reason_column, reason_filter, tenant_admin
from citycard.tenants.exchange.models import InboxMessage, IssuerRejection, OutboxMessage, SeenCounter
from citycard.terminal_kit.money import yuan


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


@admin.register(IssuerRejection, site=tenant_admin)
class IssuerRejectionAdmin(ReadOnlyAdmin):
    """The records of this tenant's cards it rejected as issuer, record by record, as it answered."""

    reason_shown = reason_column("reason", _("reason"))
    list_display = ("cycle", "record_id", "acquirer", "card_no", "amount", "reason_shown", "answered_at")
    list_filter = (reason_filter("reason", _("reason")), "acquirer", "cycle")
    search_fields = ("card_no", "record_id")

    @admin.display(description=_("amount"), ordering="amount_fen")
    def amount(self, obj: IssuerRejection) -> str:
        return yuan(obj.amount_fen)
