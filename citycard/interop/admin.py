"""Platform admin pages for clearing staff: agreements and their versions, cycles, records and exceptions, the bilateral
matrix, net positions, settlement instructions, reconciliation files, disputes, refused messages."""

from __future__ import annotations

import datetime as dt

from django import forms
from django.contrib import admin
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from citycard.interop.models import (
    CELL_ID_BASE,
    AgreementVersion,
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
from citycard.interop.services import agreements
from citycard.platform.admin_sites import (
    ReadOnlyAdmin,
    ServiceFormAdmin,
    platform_admin,
    reason_column,
    reason_filter,
)


@admin.register(RoamingAgreement, site=platform_admin)
class RoamingAgreementAdmin(ReadOnlyAdmin):
    """The agreements' standing terms and the version in force today; their dated terms change only by a
    new version (Agreement versions → Add), never by editing a row."""

    list_display = (
        "network",
        "service",
        "period",
        "operator",
        "settlement_lag_days",
        "dispute_window_days",
        "in_force_today",
    )

    @admin.display(description=_("version in force today"))
    def in_force_today(self, obj: RoamingAgreement) -> str:
        version = obj.version_on(timezone.localdate())
        if version is None:
            return "—"
        return _(
            "v%(number)s from %(day)s: %(policy)s, issuer %(issuer)s bps, network %(network)s bps, "
            "cut-off %(cut_off)s, grace %(grace)s min"
        ) % {
            "number": version.number,
            "day": version.effective_from,
            "policy": version.get_visitor_policy_display(),
            "issuer": version.issuer_fee_bps,
            "network": version.network_fee_bps,
            "cut_off": f"{version.cut_off:%H:%M}",
            "grace": version.hotlist_grace_minutes,
        }

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("network").prefetch_related("versions")


class AgreementVersionForm(forms.ModelForm):
    class Meta:
        model = AgreementVersion
        fields = (
            "agreement",
            "effective_from",
            "visitor_policy",
            "issuer_fee_bps",
            "network_fee_bps",
            "cut_off",
            "hotlist_grace_minutes",
            "note",
        )
        help_texts = {"effective_from": _("The first business date it prices and clears (YYYY-MM-DD).")}


@admin.register(AgreementVersion, site=platform_admin)
class AgreementVersionAdmin(ServiceFormAdmin):
    """Every version of every agreement, read-only; Add makes a new one through
    ``interop.services.agreements.agreement_version_add`` (checked, audited, fares republished on a new
    visitor policy). A refusal comes back as one line, with nothing written."""

    form = AgreementVersionForm
    list_display = (
        "agreement",
        "number",
        "effective_from",
        "visitor_policy",
        "issuer_fee_bps",
        "network_fee_bps",
        "cut_off",
        "hotlist_grace_minutes",
        "created_by",
        "created_at",
        "note",
    )
    list_filter = ("agreement",)
    ordering = ("agreement__network__code", "agreement__service", "-effective_from", "-number")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("agreement__network")

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        initial.setdefault("effective_from", timezone.localdate() + dt.timedelta(days=1))
        return initial

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        agreement = data["agreement"]
        version = agreements.agreement_version_add(
            network_code=agreement.network.code,
            service=agreement.service,
            effective_from=data["effective_from"],
            visitor_policy=data["visitor_policy"],
            issuer_fee_bps=data["issuer_fee_bps"],
            network_fee_bps=data["network_fee_bps"],
            cut_off=data["cut_off"],
            hotlist_grace_minutes=data["hotlist_grace_minutes"],
            note=data.get("note") or "",
            actor=f"user:{request.user.username}",
        )
        obj.pk, obj.number = version.pk, version.number
        obj.created_at, obj.created_by = version.created_at, version.created_by


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
class ClearingCycleAdmin(ReadOnlyAdmin):
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
class ClearingRecordAdmin(ReadOnlyAdmin):
    """Records; filter status = rejected for the exceptions (with the issuer's reason)."""

    def get_queryset(self, request):
        return super().get_queryset(request).with_status()

    @admin.display(description=_("status"), ordering="current_status")
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
        "reason_shown",
        "accepted_at",
    )
    reason_shown = reason_column("reason", _("reason"))
    list_filter = (
        RecordStatusFilter,
        reason_filter("reason", _("reason"), status="rejected"),
        "kind",
        "acquirer",
        "issuer",
    )
    search_fields = ("record_id", "card_no", "message_id")


@admin.register(BilateralPosition, site=platform_admin)
class BilateralPositionAdmin(ReadOnlyAdmin):
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
    show_full_result_count = False  # the cells of every cycle would be unnested to count them

    def get_object(self, request, object_id, from_field=None):
        # The cells are a view over the matrix's rows: a cell's id names its row (id // CELL_ID_BASE), so
        # it is read through the row's primary key rather than by unnesting every row to find it.
        try:
            pk = int(object_id)
        except (TypeError, ValueError):
            return None
        return self.get_queryset(request).filter(row_id=pk // CELL_ID_BASE, pk=pk).first()


@admin.register(NetPosition, site=platform_admin)
class NetPositionAdmin(ReadOnlyAdmin):
    list_display = ("cycle", "participant", "receivable_fen", "payable_fen", "net_fen")
    list_filter = ("cycle",)


@admin.register(SettlementInstruction, site=platform_admin)
class SettlementInstructionAdmin(ReadOnlyAdmin):
    list_display = ("cycle", "payer", "payee", "amount_fen", "value_date")


@admin.register(ReconciliationFile, site=platform_admin)
class ReconciliationFileAdmin(ReadOnlyAdmin):
    list_display = ("cycle", "participant", "state", "sha256", "answered_at")
    list_filter = ("state",)


@admin.register(Dispute, site=platform_admin)
class DisputeAdmin(ReadOnlyAdmin):
    list_display = ("record", "raised_by", "reason", "state", "raised_at", "resolved_at", "adjustment")
    list_filter = ("state",)


@admin.register(MessageRefusal, site=platform_admin)
class MessageRefusalAdmin(ReadOnlyAdmin):
    list_display = ("refused_at", "sender", "message_id", "kind", "code", "message")
    list_filter = ("code", "sender")
