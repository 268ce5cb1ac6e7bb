"""Reading channels (with their keys unsealed for the adapter), orders, statement runs and differences."""

from __future__ import annotations

import json

from django.db.models import QuerySet

from citycard.platform.errors import NotFound
from citycard.tenants.cards.pii import Sealer
from citycard.tenants.payments.models import (
    ChannelPayout,
    PaymentChannel,
    ReconException,
    StatementRun,
    SuspenseItem,
    SuspenseState,
    TopupOrder,
)
from citycard.tenants.payments.protocols import ChannelAdapter, ChannelConfig
from citycard.tenants.payments.protocols.registry import adapter_for


def sealed_field(code: str) -> str:
    return f"payment-channel:{code}"


def channel_by_code(*, code: str, active_only: bool = True) -> PaymentChannel:
    channel = PaymentChannel.objects.filter(code=code).first()
    if channel is None or (active_only and not channel.active):
        raise NotFound(f"no active payment channel {code!r}", code="no_channel", field="channel")
    return channel


def channel_config(channel: PaymentChannel) -> ChannelConfig:
    """The adapter's configuration, the sealed keys opened with the tenant's data key."""
    opened = json.loads(
        Sealer().open(sealed_field(channel.code), channel.secrets_sealed, channel.secrets_key_id)
    )
    return ChannelConfig(
        merchant_id=channel.merchant_id,
        app_id=channel.app_id,
        gateway_url=channel.gateway_url,
        notify_url=channel.notify_url,
        private_key_pem=opened["private_key_pem"],
        peer_public_key_pem=channel.provider_public_key_pem,
        secret=opened.get("secret", ""),
        serial_no=channel.serial_no,
        peer_serial_no=channel.provider_serial,
    )


def channel_adapter(channel: PaymentChannel) -> ChannelAdapter:
    return adapter_for(channel.provider, channel_config(channel))


def channels() -> QuerySet[PaymentChannel]:
    return PaymentChannel.objects.order_by("code")


def order_by_no(*, out_trade_no: str) -> TopupOrder:
    order = TopupOrder.objects.select_related("channel").filter(out_trade_no=out_trade_no).first()
    if order is None:
        raise NotFound(f"no top-up order {out_trade_no!r}", code="no_order", field="out_trade_no")
    return order


def orders_of_card(*, card_no: str) -> QuerySet[TopupOrder]:
    return TopupOrder.objects.filter(card_no=card_no).select_related("channel").order_by("-created_at", "-id")


def statement_runs(*, channel_code: str | None = None) -> QuerySet[StatementRun]:
    runs = StatementRun.objects.select_related("channel")
    if channel_code:
        runs = runs.filter(channel__code=channel_code)
    return runs.order_by("-statement_date", "-at")


def differences(*, open_only: bool = False, channel_code: str | None = None) -> QuerySet[ReconException]:
    rows = ReconException.objects.select_related("run__channel")
    if open_only:
        rows = rows.filter(resolved_at__isnull=True)
    if channel_code:
        rows = rows.filter(run__channel__code=channel_code)
    return rows.order_by("-run__statement_date", "id")


def suspense_items(*, open_only: bool = False, channel_code: str | None = None) -> QuerySet[SuspenseItem]:
    """The 长款 held in suspense (挂账), open ones first."""
    rows = SuspenseItem.objects.select_related("channel", "difference__run")
    if open_only:
        rows = rows.filter(state=SuspenseState.OPEN)
    if channel_code:
        rows = rows.filter(channel__code=channel_code)
    return rows.order_by("state", "id")


def payouts(*, channel_code: str | None = None) -> QuerySet[ChannelPayout]:
    rows = ChannelPayout.objects.select_related("channel", "difference")
    if channel_code:
        rows = rows.filter(channel__code=channel_code)
    return rows.order_by("-statement_date", "-id")
