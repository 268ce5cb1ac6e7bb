"""Platform admin pages for clearing staff: agreements, cycles, records and exceptions, the bilateral
matrix, net positions, settlement instructions, reconciliation files, disputes, refused messages."""

from __future__ import annotations

from django.contrib import admin

from citycard.interop.models import (
    BilateralPosition,
    ClearingCycle,
    ClearingRecord,
    Dispute,
    MessageRefusal,
    NetPosition,
    ReconciliationFile,
    RecordStatus,
    RoamingAgreement,
    SettlementInstruction,
)
from citycard.platform.admin_sites import platform_admin


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(RoamingAgreement, site=platform_admin)
class RoamingAgreementAdmin(admin.ModelAdmin):
    list_display = (
        "network",
        "service",
        "visitor_policy",
        "issuer_fee_bps",
        "network_fee_bps",
        "period",
        "cut_off",
        "dispute_window_days",
    )


class NetPositionInline(admin.TabularInline):
    model = NetPosition
    fields = ("participant", "receivable_fen", "payable_fen", "net_fen")
    readonly_fields = fields
    extra = 0
    can_delete = False


class InstructionInline(admin.TabularInline):
    model = SettlementInstruction
    fields = ("payer", "payee", "amount_fen", "value_date")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(ClearingCycle, site=platform_admin)
class ClearingCycleAdmin(ReadOnly):
    list_display = ("agreement", "business_date", "state", "cut_off_at", "closed_at", "settled_at", "resumes")
    list_filter = ("state", "agreement")
    date_hierarchy = "business_date"
    inlines = [NetPositionInline, InstructionInline]


class RecordStatusFilter(admin.SimpleListFilter):
    """The status as read: validation writes only the rejections, so a pending record of a validated
    cycle is valid (``models.record_status``)."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return RecordStatus.choices

    def queryset(self, request, queryset):
        return queryset.filter(current_status=self.value()) if self.value() else queryset


@admin.register(ClearingRecord, site=platform_admin)
class ClearingRecordAdmin(ReadOnly):
    """Records; filter status = rejected for the exceptions (with the issuer's reason)."""

    def get_queryset(self, request):
        return super().get_queryset(request).with_status()

    @admin.display(description="status", ordering="current_status")
    def current_status(self, obj: ClearingRecord) -> str:
        return obj.current_status

    list_display = (
        "record_id",
        "cycle",
        "kind",
        "acquirer",
        "issuer",
        "card_no",
        "amount_fen",
        "current_status",
        "reason",
        "accepted_at",
    )
    list_filter = (RecordStatusFilter, "reason", "kind", "acquirer", "issuer")
    search_fields = ("record_id", "card_no", "message_id")


@admin.register(BilateralPosition, site=platform_admin)
class BilateralPositionAdmin(ReadOnly):
    list_display = (
        "cycle",
        "issuer",
        "acquirer",
        "records",
        "amount_fen",
        "issuer_fee_fen",
        "network_fee_fen",
        "acquirer_due_fen",
    )
    list_filter = ("cycle",)


@admin.register(NetPosition, site=platform_admin)
class NetPositionAdmin(ReadOnly):
    list_display = ("cycle", "participant", "receivable_fen", "payable_fen", "net_fen")
    list_filter = ("cycle",)


@admin.register(SettlementInstruction, site=platform_admin)
class SettlementInstructionAdmin(ReadOnly):
    list_display = ("cycle", "payer", "payee", "amount_fen", "value_date")


@admin.register(ReconciliationFile, site=platform_admin)
class ReconciliationFileAdmin(ReadOnly):
    list_display = ("cycle", "participant", "state", "sha256", "answered_at")
    list_filter = ("state",)


@admin.register(Dispute, site=platform_admin)
class DisputeAdmin(ReadOnly):
    list_display = ("record", "raised_by", "reason", "state", "raised_at", "resolved_at", "adjustment")
    list_filter = ("state",)


@admin.register(MessageRefusal, site=platform_admin)
class MessageRefusalAdmin(ReadOnly):
    list_display = ("refused_at", "sender", "message_id", "kind", "code", "message")
    list_filter = ("code", "sender")
