"""Tenant admin: the settled cycles booked on the ledger (each with its posting, in yuan) and the differences
between a cycle's reconciliation file and the ledger (差错), which a clerk resolves with a note. Money moves
only through the services."""

from __future__ import annotations

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from citycard.platform.admin_sites import ReadOnlyAdmin, tenant_admin
from citycard.platform.errors import DomainError
from citycard.tenants.settlement import services
from citycard.tenants.settlement.models import CycleSettlement, SettlementDifference
from citycard.terminal_kit.money import yuan


class DifferenceInline(admin.TabularInline):
    model = SettlementDifference
    extra = 0
    can_delete = False
    fields = (
        "record_id",
        "kind",
        "role",
        "counterparty",
        "status",
        "file_fen",
        "ledger_fen",
        "reason",
        "resolved_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(CycleSettlement, site=tenant_admin)
class CycleSettlementAdmin(ReadOnlyAdmin):
    """Each settled clearing cycle as booked here: the participant's net position in the file, what moved to
    the settlement bank account, the fees, the posting, and the differences found."""

    list_display = (
        "cycle",
        "participant",
        "net_position",
        "settled",
        "fees",
        "records",
        "differences",
        "posting_link",
        "booked_at",
    )
    list_filter = ("service",)
    search_fields = ("=cycle",)
    inlines = [DifferenceInline]

    @admin.display(description=_("net position"))
    def net_position(self, obj: CycleSettlement) -> str:
        return yuan(obj.file_net_fen)

    @admin.display(description=_("settled"))
    def settled(self, obj: CycleSettlement) -> str:
        return yuan(obj.settled_fen)

    @admin.display(description=_("fees"))
    def fees(self, obj: CycleSettlement) -> str:
        return yuan(obj.fees_fen)

    @admin.display(description=_("settlement posting"))
    def posting_link(self, obj: CycleSettlement) -> str:
        if obj.posting_id is None:
            return "—"
        url = reverse("tenant_admin:accounts_posting_change", args=[obj.posting_id])
        return format_html('<a href="{}">{}</a>', url, obj.posting_id)


@admin.register(SettlementDifference, site=tenant_admin)
class SettlementDifferenceAdmin(ReadOnlyAdmin):
    """A record of a settled cycle the ledger does not hold as its file says, with the reason; a clerk who
    may change differences marks them resolved (the action, or ``citycard settlement resolve ID --note``)."""

    list_display = (
        "settlement",
        "record_id",
        "role",
        "counterparty",
        "file",
        "ledger",
        "reason",
        "resolved_at",
        "note",
    )
    list_filter = ("reason", "role")
    search_fields = ("=record_id", "=settlement__cycle")
    actions = ["resolve"]

    @admin.display(description=_("file"))
    def file(self, obj: SettlementDifference) -> str:
        return yuan(obj.file_fen)

    @admin.display(description=_("ledger"))
    def ledger(self, obj: SettlementDifference) -> str:
        return yuan(obj.ledger_fen)

    @admin.action(description=_("Mark resolved (settled by hand)"), permissions=["view"])
    def resolve(self, request, queryset):
        if not request.user.has_perm("settlement.change_settlementdifference"):
            self.message_user(request, _("You may not resolve settlement differences."), messages.ERROR)
            return
        for item in queryset.filter(resolved_at__isnull=True):
            try:
                services.settlement_difference_resolve(
                    difference_id=item.pk, note=str(_("resolved in the admin")), actor=request.user.username
                )
            except DomainError as exc:
                self.message_user(request, f"{item.record_id}: {exc.message}", messages.ERROR)
