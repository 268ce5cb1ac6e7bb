"""Tenant admin: channels, orders, refunds, notifications, statement runs and differences are read here;
channels are configured with `citycard channels configure` (keys never pass through a web form) and
differences resolved on /payments/reconciliation/."""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _

from citycard.platform.admin_sites import ReadOnlyAdmin, tenant_admin
from citycard.platform.errors import DomainError
from citycard.tenants.payments import services
from citycard.tenants.payments.models import (
    ChannelBinding,
    ChannelNotice,
    ChannelPayout,
    ChannelRefund,
    PaymentChannel,
    ReconException,
    StatementRun,
    SuspenseItem,
    TopupOrder,
)


@admin.register(PaymentChannel, site=tenant_admin)
class PaymentChannelAdmin(ReadOnlyAdmin):
    list_display = ("code", "provider", "name", "merchant_id", "gateway_url", "active", "configured_at")
    list_filter = ("provider", "active")
    exclude = ("secrets_sealed", "secrets_key_id")


@admin.register(TopupOrder, site=tenant_admin)
class TopupOrderAdmin(ReadOnlyAdmin):
    list_display = (
        "out_trade_no",
        "channel",
        "card_no",
        "amount_fen",
        "state",
        "settled_by",
        "created_at",
        "paid_at",
    )
    list_filter = ("state", "channel", "purpose")
    search_fields = ("=out_trade_no", "=card_no", "=provider_trade_no")


@admin.register(ChannelRefund, site=tenant_admin)
class ChannelRefundAdmin(ReadOnlyAdmin):
    list_display = ("out_refund_no", "order", "amount_fen", "state", "at")
    search_fields = ("=out_refund_no",)


@admin.register(ChannelNotice, site=tenant_admin)
class ChannelNoticeAdmin(ReadOnlyAdmin):
    list_display = ("received_at", "channel", "out_trade_no", "amount_fen", "outcome", "detail")
    list_filter = ("outcome", "channel")
    search_fields = ("=out_trade_no",)


@admin.register(StatementRun, site=tenant_admin)
class StatementRunAdmin(ReadOnlyAdmin):
    list_display = (
        "channel",
        "statement_date",
        "lines",
        "paid_fen",
        "refunded_fen",
        "fee_fen",
        "matched",
        "exceptions",
        "at",
    )
    list_filter = ("channel",)


@admin.register(ReconException, site=tenant_admin)
class ReconExceptionAdmin(ReadOnlyAdmin):
    list_display = (
        "run",
        "kind",
        "out_trade_no",
        "statement_fen",
        "ledger_fen",
        "reason",
        "action",
        "resolved_at",
    )
    list_filter = ("kind", "action")
    search_fields = ("=out_trade_no",)


@admin.register(ChannelBinding, site=tenant_admin)
class ChannelBindingAdmin(ReadOnlyAdmin):
    list_display = ("card_no", "channel", "agreement_no", "active", "bound_at")
    search_fields = ("=card_no",)


@admin.register(SuspenseItem, site=tenant_admin)
class SuspenseItemAdmin(ReadOnlyAdmin):
    """长款 held in suspense (挂账); matched on /payments/reconciliation/ or with `citycard channels
    suspense-match`, or refunded through the channel (this page's action, or `suspense-refund`); a matched
    item refunded after all from the card's account (the second action, or `suspense-refund-matched`)."""

    list_display = (
        "id",
        "channel",
        "out_trade_no",
        "amount_fen",
        "state",
        "card_no",
        "refund_no",
        "resolved_at",
    )
    list_filter = ("state", "channel")
    search_fields = ("=out_trade_no", "=card_no")
    actions = ["refund_to_payer", "refund_matched_to_payer"]

    def _refund_each(self, request, queryset, refund) -> None:
        if not request.user.has_perm("payments.change_reconexception"):
            self.message_user(request, _("You may not resolve reconciliation differences."), messages.ERROR)
            return
        for item in queryset:
            try:
                refund(item_id=item.pk, note=str(_("refunded from the admin")), actor=request.user.username)
            except DomainError as exc:
                self.message_user(request, f"{item.out_trade_no}: {exc.message}", messages.ERROR)

    @admin.action(description=_("Refund to the payer through the channel"), permissions=["view"])
    def refund_to_payer(self, request, queryset):
        self._refund_each(request, queryset, services.suspense_refund)

    @admin.action(
        description=_("Refund a matched item to the payer through the channel (debits the card's account)"),
        permissions=["view"],
    )
    def refund_matched_to_payer(self, request, queryset):
        self._refund_each(request, queryset, services.suspense_matched_refund)


@admin.register(ChannelPayout, site=tenant_admin)
class ChannelPayoutAdmin(ReadOnlyAdmin):
    list_display = (
        "channel",
        "statement_date",
        "bank_reference",
        "amount_fen",
        "expected_fen",
        "received_on",
    )
    list_filter = ("channel",)
    search_fields = ("=bank_reference",)
