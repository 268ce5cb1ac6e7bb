"""Top-ups through each provider's channel against its sandbox (docs/payments.md): the protocol's
signatures and encryption both ways, notifications replayed credit once, a lost notification settled by a
query, a wrong amount never credited, refunds, and each provider's statement file reconciled against the
ledger with every difference an exception a clerk resolves."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.test import Client
from django.utils import timezone

from citycard.platform.errors import Conflict, DomainError
from citycard.platform.models import Role
from citycard.platform.services import user_create
from citycard.tenants.accounts.models import LedgerAccount
from citycard.tenants.accounts.selectors import account_of_card, ledger_totals
from citycard.tenants.payments import services
from citycard.tenants.payments.models import ChannelNotice, OrderState, PaymentChannel, ReconException
from citycard.tenants.payments.protocols import beijing_now
from tests.tenants.payments.conftest import deliver

pytestmark = pytest.mark.django_db
PROVIDERS = ["wechat", "alipay", "unionpay", "bank"]


def key() -> str:
    return f"app-{uuid.uuid4().hex[:12]}"


def balance(card_no: str) -> int:
    return account_of_card(card_no=card_no).balance_fen


def assert_balanced():
    totals = ledger_totals()
    assert (
        totals.unbalanced_postings == 0 and totals.balances_total_fen == 0 and totals.balances_mismatched == 0
    )


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_top_up_through_each_channel_credits_once_refunds_and_reconciles(provider, channel, card_no, inbox):
    sandbox, code = channel(provider)
    request = key()
    order = services.topup_order_create(
        channel_code=code, card_no=card_no, amount_fen=20000, request_key=request, actor="app"
    )
    assert order.payment_params and order.state == OrderState.CREATED
    again = services.topup_order_create(
        channel_code=code, card_no=card_no, amount_fen=20000, request_key=request, actor="app"
    )
    assert again.pk == order.pk and again.out_trade_no == order.out_trade_no
    with pytest.raises(Conflict):
        services.topup_order_create(
            channel_code=code, card_no=card_no, amount_fen=100, request_key=request, actor="app"
        )

    sandbox.payer_pays(order.payment_params, replay=2)  # the same notification three times
    acks = deliver(inbox, sandbox, code)
    assert len(acks) == 3 and all(status in (200, 204) for status in acks)
    assert balance(card_no) == 20000
    outcomes = list(
        ChannelNotice.objects.filter(out_trade_no=order.out_trade_no)
        .order_by("id")
        .values_list("outcome", flat=True)
    )
    assert outcomes == ["credited", "replay", "replay"]

    refund_key = key()
    refund = services.topup_order_refund(
        out_trade_no=order.out_trade_no, amount_fen=5000, request_key=refund_key, actor="app"
    )
    assert (
        services.topup_order_refund(
            out_trade_no=order.out_trade_no, amount_fen=5000, request_key=refund_key, actor="app"
        ).pk
        == refund.pk
    )
    assert balance(card_no) == 15000
    clearing = LedgerAccount.objects.get(code=f"topup:channel-{code}")
    assert clearing.balance_fen == -15000
    assert_balanced()

    run = services.statement_fetch_and_reconcile(channel_code=code, day=beijing_now().date(), actor="clerk")
    mine = ReconException.objects.filter(run=run, out_trade_no=order.out_trade_no)
    assert not mine.exists(), list(mine.values("kind", "reason"))
    assert run.lines >= 2 and run.paid_fen >= 20000 and run.refunded_fen >= 5000


def test_a_lost_notification_is_settled_by_the_query_after_the_timeout(channel, card_no, inbox):
    sandbox, code = channel("wechat")
    order = services.topup_order_create(
        channel_code=code, card_no=card_no, amount_fen=3000, request_key=key(), actor="app"
    )
    sandbox.payer_pays(order.payment_params, drop=True)
    assert deliver(inbox, sandbox, code) == []
    assert services.topup_orders_sweep(actor="sweep", now=timezone.now()).queried == 0  # not yet overdue
    settled = services.topup_orders_sweep(actor="sweep", now=timezone.now() + dt.timedelta(minutes=6))
    assert settled.credited == [order.out_trade_no] and settled.closed == []
    order.refresh_from_db()
    assert order.state == OrderState.PAID and order.settled_by == "query" and balance(card_no) == 3000
    # The notification arriving late after all credits nothing more.
    body, headers = sandbox.notification(sandbox.orders[order.out_trade_no])
    services.topup_notification_receive(channel_code=code, headers=headers, body=body)
    assert balance(card_no) == 3000


def test_a_tampered_or_foreign_notification_credits_nothing(channel, card_no, inbox):
    sandbox, code = channel("wechat")
    order = services.topup_order_create(
        channel_code=code, card_no=card_no, amount_fen=3000, request_key=key(), actor="app"
    )
    sandbox.payer_pays(order.payment_params, drop=True)
    body, headers = sandbox.notification(sandbox.orders[order.out_trade_no])
    reply = services.topup_notification_receive(
        channel_code=code, headers=headers, body=body.replace(b"TRANSACTION", b"TRANSACTIoN")
    )
    assert reply.status == 500
    headers["Wechatpay-Timestamp"] = str(int(headers["Wechatpay-Timestamp"]) - 3600)
    assert services.topup_notification_receive(channel_code=code, headers=headers, body=body).status == 500
    assert balance(card_no) == 0
    assert set(ChannelNotice.objects.values_list("outcome", flat=True)) == {"rejected"}


def test_a_wrong_amount_is_not_credited_and_reconciliation_names_it(channel, card_no, inbox):
    sandbox, code = channel("alipay", "alipay-amt")
    order = services.topup_order_create(
        channel_code=code, card_no=card_no, amount_fen=5000, request_key=key(), actor="app"
    )
    sandbox.payer_pays(order.payment_params, paid_fen=4000)
    deliver(inbox, sandbox, code)
    order.refresh_from_db()
    assert order.state == OrderState.MISMATCH and order.paid_fen == 4000 and balance(card_no) == 0
    run = services.statement_fetch_and_reconcile(channel_code=code, day=beijing_now().date(), actor="clerk")
    diff = ReconException.objects.get(run=run, out_trade_no=order.out_trade_no)
    assert diff.kind == "amount" and diff.statement_fen == 4000 and "4000 fen" in diff.reason
    with pytest.raises(DomainError, match="resolved by"):
        services.difference_resolve(difference_id=diff.pk, action="reverse", note="x", actor="clerk")
    services.difference_resolve(
        difference_id=diff.pk, action="credit", note="payer paid 40.00", actor="clerk"
    )
    assert balance(card_no) == 4000
    with pytest.raises(Conflict):
        services.difference_resolve(difference_id=diff.pk, action="credit", note="again", actor="clerk")
    assert_balanced()


def test_statement_differences_long_short_and_missing_each_become_an_exception(channel, card_no, inbox):
    sandbox, code = channel("unionpay", "unionpay-diff")
    today = beijing_now().date()
    paid = services.topup_order_create(
        channel_code=code, card_no=card_no, amount_fen=1000, request_key=key(), actor="app"
    )
    lost = services.topup_order_create(
        channel_code=code, card_no=card_no, amount_fen=2000, request_key=key(), actor="app"
    )
    sandbox.payer_pays(paid.payment_params)
    sandbox.payer_pays(lost.payment_params, drop=True)
    deliver(inbox, sandbox, code)
    sandbox.statement_omit(paid.out_trade_no)  # 短款: credited here, not in the statement
    stranger = "CCNOTOURS" + uuid.uuid4().hex[:20].upper()
    sandbox.statement_add(out_trade_no=stranger, amount_fen=777, at=beijing_now())  # 长款
    data = sandbox.statement(today)
    run = services.statement_reconcile(
        channel_code=code, day=today, data=data, actor="clerk", file_name="INN"
    )
    kinds = {d.out_trade_no: d.kind for d in ReconException.objects.filter(run=run)}
    assert kinds[paid.out_trade_no] == "short"
    assert kinds[lost.out_trade_no] == "missing"
    assert kinds[stranger] == "long"
    assert services.statement_reconcile(channel_code=code, day=today, data=data, actor="clerk").pk == run.pk

    diffs = {
        d.kind: d
        for d in ReconException.objects.filter(
            run=run, out_trade_no__in=[paid.out_trade_no, lost.out_trade_no, stranger]
        )
    }
    assert balance(card_no) == 1000
    services.difference_resolve(
        difference_id=diffs["missing"].pk, action="credit", note="paid per statement", actor="clerk"
    )
    assert balance(card_no) == 3000
    services.difference_resolve(
        difference_id=diffs["short"].pk, action="reverse", note="never arrived", actor="clerk"
    )
    assert balance(card_no) == 2000
    # The 长款 is held in suspense (挂账): resolved by matching it, not by accepting it.
    with pytest.raises(DomainError, match="in suspense") as refused:
        services.difference_resolve(difference_id=diffs["long"].pk, action="accept", note="x", actor="clerk")
    assert refused.value.code == "in_suspense"
    item = diffs["long"].suspense_item
    assert item.amount_fen == 777 and item.state == "open"
    services.suspense_match(item_id=item.pk, card_no=card_no, note="the payer called", actor="clerk")
    assert balance(card_no) == 2777
    diffs["long"].refresh_from_db()
    assert diffs["long"].action == "match" and diffs["long"].resolved_by == "clerk"
    assert_balanced()


def test_a_truncated_statement_is_refused_whole(channel, card_no, inbox):
    sandbox, code = channel("wechat", "wechat-trunc")
    order = services.topup_order_create(
        channel_code=code, card_no=card_no, amount_fen=1000, request_key=key(), actor="app"
    )
    sandbox.payer_pays(order.payment_params)
    deliver(inbox, sandbox, code)
    data = sandbox.statement(beijing_now().date())
    assert data.decode().splitlines()[1].startswith("`")  # backquoted fields
    with pytest.raises(DomainError, match="summary"):
        services.statement_reconcile(
            channel_code=code, day=beijing_now().date(), data=data.rsplit(b"\r\n", 3)[0], actor="c"
        )


def test_channel_keys_are_sealed_and_bad_keys_refused(channel):
    channel("wechat")
    row = PaymentChannel.objects.get(code="wechat")
    assert b"PRIVATE KEY" not in bytes(row.secrets_sealed)
    with pytest.raises(DomainError, match="PEM private key"):
        services.channel_configure(
            code="x", provider="wechat", name="x", merchant_id="1", gateway_url="http://h", notify_url="http://h",
            private_key_pem="nope", provider_public_key_pem=row.provider_public_key_pem, secret="k" * 32, actor="t",
        )  # fmt: skip


def test_the_notify_view_and_the_clerks_reconciliation_page(channel, card_no, inbox):
    sandbox, code = channel("bank")
    order = services.topup_order_create(
        channel_code=code, card_no=card_no, amount_fen=800, request_key=key(), actor="app"
    )
    sandbox.payer_pays(order.payment_params)
    sandbox.settle()
    ((headers, body),) = inbox.drain()
    anonymous = Client()
    response = anonymous.post(
        f"/payments/notify/{code}", body, content_type="application/json", HTTP_HOST="jiaxing.localhost",
        HTTP_X_BANK_SIGNATURE=headers["X-Bank-Signature"],
    )  # fmt: skip
    assert response.status_code == 200 and b"0000" in response.content
    assert balance(card_no) == 800
    forged = anonymous.post(
        f"/payments/notify/{code}", body, content_type="application/json", HTTP_HOST="jiaxing.localhost",
        HTTP_X_BANK_SIGNATURE="AAAA",
    )  # fmt: skip
    assert forged.status_code == 500

    sandbox.statement_omit(order.out_trade_no)
    run = services.statement_fetch_and_reconcile(channel_code=code, day=beijing_now().date(), actor="clerk")
    diff = ReconException.objects.get(run=run, out_trade_no=order.out_trade_no)
    clerk = Client()
    clerk.force_login(
        user_create(
            username="jx-fin", role=Role.CITY_ADMIN, tenant_code="jiaxing", password="a-long-password-1"
        )
    )
    page = clerk.get("/payments/reconciliation/", HTTP_HOST="jiaxing.localhost").content.decode()
    assert order.out_trade_no in page and str(run.statement_date) in page
    clerk.post(
        f"/payments/reconciliation/{diff.pk}/resolve",
        {"action": "accept", "note": "in tomorrow's file"},
        HTTP_HOST="jiaxing.localhost",
    )
    diff.refresh_from_db()
    assert diff.action == "accept" and diff.resolved_by == "jx-fin"
    assert anonymous.get("/payments/reconciliation/", HTTP_HOST="jiaxing.localhost").status_code in (302, 403)
