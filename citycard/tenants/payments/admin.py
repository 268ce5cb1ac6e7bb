"""Tenant admin: channels, orders, refunds, notifications, statement runs and differences are read here;
channels are configured with `citycard channels configure` (keys never pass through a web form) and
differences resolved on /payments/reconciliation/."""

from __future__ import annotations

from django.contrib import admin

from citycard.platform.admin_sites import ReadOnlyAdmin, tenant_admin
from citycard.tenants.payments.models import (
    ChannelBinding,
    ChannelNotice,
    ChannelRefund,
    PaymentChannel,
    ReconException,
    StatementRun,
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
