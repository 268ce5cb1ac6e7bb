"""A channel drill against a provider's local sandbox (沙箱演练): keys generated, the sandbox served, a
channel ``sandbox-<provider>`` configured against it, one top-up taken end to end (order, the payer paying,
the signed notification delivered and credited, the notification replayed and credited nothing more), and
the day's statement downloaded in the provider's format (for the demo, with a 长款 in it). Used by
`citycard channels drill` and the demo."""

from __future__ import annotations

from dataclasses import dataclass

from citycard.tenants.accounts.selectors import account_of_card
from citycard.tenants.payments import services
from citycard.tenants.payments.models import OrderState, PaymentChannel, TopupOrder
from citycard.tenants.payments.protocols import beijing_now
from citycard.tenants.payments.sandboxes import NotifyInbox, Sandbox

SANDBOX_MERCHANT = {
    "wechat": "1900000109",
    "alipay": "2088102177846880",
    "unionpay": "777290058110048",
    "bank": "BK0001",
}
SANDBOX_APP = {"wechat": "wxd678efh567hg6787", "alipay": "2021000118600001"}


@dataclass(frozen=True)
class DrillResult:
    channel: PaymentChannel
    order: TopupOrder
    notifications: int
    balance_fen: int
    statement: bytes  # empty when the order was taken by an earlier run
    stray_trade_no: str = ""  # a 长款 the provider took besides (``stray_fen``), in the statement


def sandbox_channel_configure(
    sandbox: Sandbox, *, code: str, name: str, notify_url: str, actor: str
) -> PaymentChannel:
    """The channel ``code`` configured against a local sandbox with the keys the sandbox made for the
    city's side (its merchant, its gateway, its public key), notifications to ``notify_url``."""
    config = sandbox.merchant_config(notify_url=notify_url)
    return services.channel_configure(
        code=code,
        provider=sandbox.provider,
        name=name,
        merchant_id=config.merchant_id,
        app_id=config.app_id,
        gateway_url=config.gateway_url,
        notify_url=config.notify_url,
        private_key_pem=config.private_key_pem,
        provider_public_key_pem=config.peer_public_key_pem,
        secret=config.secret,
        actor=actor,
    )


def sandbox_drill(
    *, provider: str, card_no: str, amount_fen: int, request_key: str, actor: str, stray_fen: int = 0
) -> DrillResult:
    """The drill; ``stray_fen``: the provider also takes a payment of that much for no order of the city
    (a 长款, never notified), so the day's statement has a line the ledger never saw."""
    inbox = NotifyInbox()
    sandbox = Sandbox.start(
        provider, merchant_id=SANDBOX_MERCHANT[provider], app_id=SANDBOX_APP.get(provider, "")
    )
    try:
        code = f"sandbox-{provider}"
        channel = sandbox_channel_configure(
            sandbox, code=code, name=f"{provider} sandbox", notify_url=f"{inbox.url}/{code}", actor=actor
        )
        order = services.topup_order_create(
            channel_code=code, card_no=card_no, amount_fen=amount_fen, request_key=request_key, actor=actor
        )
        if order.state != OrderState.CREATED:  # a re-run with the same key: that top-up was taken already
            account = account_of_card(card_no=card_no)
            return DrillResult(channel, order, 0, account.balance_fen if account else 0, b"")
        sandbox.payer_pays(order.payment_params, replay=1)
        sandbox.settle()
        received = inbox.drain()
        for headers, body in received:
            services.topup_notification_receive(channel_code=code, headers=headers, body=body)
        order.refresh_from_db()
        stray = ""
        if stray_fen:
            stray = f"{order.out_trade_no[:-4]}9999"  # another number than any order of the city
            sandbox.stray_payment(out_trade_no=stray, amount_fen=stray_fen)
        statement = services.channel_adapter_statement(channel_code=code, day=beijing_now().date())
        account = account_of_card(card_no=card_no)
        return DrillResult(
            channel, order, len(received), account.balance_fen if account else 0, statement, stray
        )
    finally:
        sandbox.stop()
        inbox.stop()
