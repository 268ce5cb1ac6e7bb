"""A 长款 matched from suspense (挂账) and then wanted back by the payer: refunded through the channel under
the 长款's own order number (the trade the provider holds), from the card's online account — by the service,
by the suspense page's admin actions and by `citycard channels suspense-refund-matched`; idempotent, and a
later statement with the refund in it reconciles without a difference."""

from __future__ import annotations

import io
import uuid

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from citycard.platform.errors import DomainError
from citycard.platform.models import Role
from citycard.platform.services import user_create
from citycard.tenants.accounts import services as accounts
from citycard.tenants.accounts.models import AccountKind, LedgerAccount
from citycard.tenants.accounts.selectors import account_of_card, ledger_totals
from citycard.tenants.departments.services import department_create
from citycard.tenants.payments import services
from citycard.tenants.payments.models import ReconException, SuspenseItem
from citycard.tenants.payments.protocols import beijing_now

pytestmark = pytest.mark.django_db
JX = {"HTTP_HOST": "jiaxing.localhost"}


def stray_number() -> str:
    return "CC" + uuid.uuid4().hex[:20].upper()


def balance_of(code: str) -> int:
    account = LedgerAccount.objects.filter(code=code).first()
    return account.balance_fen if account else 0


def assert_balanced() -> None:
    totals = ledger_totals()
    assert totals.unbalanced_postings == 0 and totals.balances_total_fen == 0


def held(sandbox, code: str, *amounts: int) -> list[SuspenseItem]:
    """Payments the provider took for no order of the city, reconciled into suspense; their items."""
    strays = [stray_number() for _ in amounts]
    for stray, amount in zip(strays, amounts, strict=True):
        sandbox.stray_payment(out_trade_no=stray, amount_fen=amount)
    run = services.statement_fetch_and_reconcile(channel_code=code, day=beijing_now().date(), actor="clerk")
    return [SuspenseItem.objects.get(difference__run=run, out_trade_no=s) for s in strays]


def test_a_long_payment_matched_to_a_card_is_refunded_after_all(own_channel, card_no):
    sandbox, code = own_channel("wechat")
    (item,) = held(sandbox, code, 900)
    with pytest.raises(DomainError) as open_item:
        services.suspense_matched_refund(item_id=item.pk, note="x", actor="clerk")
    assert open_item.value.code == "not_matched"
    services.suspense_match(item_id=item.pk, card_no=card_no, note="the payer called", actor="clerk")
    assert account_of_card(card_no=card_no).balance_fen == 900
    # The cardholder spent part of it: the card's account cannot give the whole back, nothing is written.
    shop = accounts.ledger_account_external(code="merchant:shop", kind=AccountKind.MERCHANT)
    accounts.account_pay(
        card_no=card_no, amount_fen=500, payee=shop, idempotency_key="spent", memo="spent", actor="t"
    )
    with pytest.raises(DomainError):
        services.suspense_matched_refund(item_id=item.pk, note="wants it back", actor="clerk")
    assert sandbox.orders[item.out_trade_no].refunds == []
    accounts.account_topup(card_no=card_no, amount_fen=500, idempotency_key="back", actor="t")

    with pytest.raises(DomainError, match="a note"):
        services.suspense_matched_refund(item_id=item.pk, note=" ", actor="clerk")
    item = services.suspense_matched_refund(item_id=item.pk, note="wants it back", actor="clerk")
    assert item.state == "refunded" and item.refund_no.startswith("SR") and item.card_no == card_no
    assert "the payer called" in item.note and "wants it back" in item.note
    assert account_of_card(card_no=card_no).balance_fen == 0
    assert [r["amount_fen"] for r in sandbox.orders[item.out_trade_no].refunds] == [900]
    # A retry (a timeout, a second click) refunds nothing again, at the provider or in the ledger.
    again = services.suspense_matched_refund(item_id=item.pk, note="again", actor="clerk")
    assert again.refund_no == item.refund_no and len(sandbox.orders[item.out_trade_no].refunds) == 1
    assert account_of_card(card_no=card_no).balance_fen == 0
    # The day's corrected statement carries the refund under the item's number: no new difference.
    run = services.statement_fetch_and_reconcile(channel_code=code, day=beijing_now().date(), actor="clerk")
    assert not ReconException.objects.filter(run=run).exists()
    assert balance_of(f"suspense:channel-{code}") == 0
    assert_balanced()


def test_a_top_up_order_matched_from_suspense_is_refunded_under_the_providers_trade(own_channel, card_no):
    """The payer paid under a number a teller typed; the clerk matched the 长款 to the order it was meant
    for. Refunding the order (`topup_order_refund`, `citycard channels refund`) asks the provider under the
    number it took the money under, not the order's."""
    sandbox, code = own_channel("alipay")
    order = services.topup_order_create(
        channel_code=code, card_no=card_no, amount_fen=3000, request_key=f"k-{uuid.uuid4().hex}", actor="app"
    )
    (item,) = held(sandbox, code, 3000)
    services.suspense_match(item_id=item.pk, out_trade_no=order.out_trade_no, note="teller slip", actor="c")
    refund = services.topup_order_refund(
        out_trade_no=order.out_trade_no, amount_fen=1000, request_key="part-1", actor="clerk"
    )
    assert refund.order_id == order.pk and refund.amount_fen == 1000
    assert [r["amount_fen"] for r in sandbox.orders[item.out_trade_no].refunds] == [1000]
    assert order.out_trade_no not in sandbox.orders
    assert account_of_card(card_no=card_no).balance_fen == 2000
    # What is left comes back in full from the matched item only if the card still holds the whole.
    with pytest.raises(DomainError) as over:
        services.suspense_matched_refund(item_id=item.pk, note="rest", actor="clerk")
    assert over.value.code == "over_refund"
    assert_balanced()


@pytest.fixture
def clerk():
    client = Client()
    client.force_login(
        user_create(
            username="jx-suspense", role=Role.CITY_ADMIN, tenant_code="jiaxing", password="a-long-password-1"
        )
    )
    return client


def test_the_suspense_pages_actions_refund_open_and_matched_items(own_channel, card_no, clerk):
    sandbox, code = own_channel("bank")
    open_item, matched = held(sandbox, code, 700, 450)
    services.suspense_match(item_id=matched.pk, card_no=card_no, note="认领", actor="clerk")
    page = clerk.get("/admin/payments/suspenseitem/", **JX)
    html = page.content.decode()
    assert page.status_code == 200
    assert open_item.out_trade_no in html and matched.out_trade_no in html
    assert "refund_to_payer" in html and "refund_matched_to_payer" in html

    # The open item's action on both: the open one refunded, the matched one refused with its reason.
    response = clerk.post(
        "/admin/payments/suspenseitem/",
        {"action": "refund_to_payer", "_selected_action": [open_item.pk, matched.pk]},
        follow=True,
        **JX,
    )
    assert response.status_code == 200
    assert matched.out_trade_no in response.content.decode()  # named in the error message
    open_item.refresh_from_db()
    matched.refresh_from_db()
    assert open_item.state == "refunded" and matched.state == "matched"
    assert [r["amount_fen"] for r in sandbox.orders[open_item.out_trade_no].refunds] == [700]

    clerk.post(
        "/admin/payments/suspenseitem/",
        {"action": "refund_matched_to_payer", "_selected_action": [matched.pk]},
        **JX,
    )
    matched.refresh_from_db()
    assert matched.state == "refunded" and matched.resolved_by == "jx-suspense"
    assert [r["amount_fen"] for r in sandbox.orders[matched.out_trade_no].refunds] == [450]
    assert account_of_card(card_no=card_no).balance_fen == 0
    # Clicked again: nothing more refunded anywhere.
    clerk.post(
        "/admin/payments/suspenseitem/",
        {"action": "refund_matched_to_payer", "_selected_action": [matched.pk]},
        **JX,
    )
    assert len(sandbox.orders[matched.out_trade_no].refunds) == 1
    assert_balanced()


def test_a_user_who_may_not_resolve_differences_refunds_nothing(own_channel, city):
    sandbox, code = own_channel("unionpay")
    (item,) = held(sandbox, code, 300)
    department_create(code="jx-edu", kind="education", name="嘉兴市教育局", actor="t")
    officer = Client()
    officer.force_login(
        user_create(
            username="jx-edu-officer",
            role=Role.DEPARTMENT_OFFICER,
            tenant_code="jiaxing",
            department="jx-edu",
            password="a-long-password-1",
        )
    )
    officer.post(
        "/admin/payments/suspenseitem/", {"action": "refund_to_payer", "_selected_action": [item.pk]}, **JX
    )
    item.refresh_from_db()
    assert item.state == "open" and sandbox.orders[item.out_trade_no].refunds == []


def test_the_command_refunds_a_matched_item(own_channel, card_no, english):
    sandbox, code = own_channel("unionpay")
    (item,) = held(sandbox, code, 1200)

    def run(*args) -> str:
        out = io.StringIO()
        call_command("channels", "--tenant", "jiaxing", *args, stdout=out)
        return out.getvalue()

    with pytest.raises(CommandError, match="only a matched item"):
        run("suspense-refund-matched", str(item.pk), "--note", "退回")
    run("suspense-match", str(item.pk), "--card", card_no, "--note", "认领")
    out = run("suspense-refund-matched", str(item.pk), "--note", "付款人要求退回")
    assert "¥12.00" in out and card_no in out and "refunded to the payer" in out
    assert "refunded to the payer" in run("suspense-refund-matched", str(item.pk), "--note", "again")
    assert [r["amount_fen"] for r in sandbox.orders[item.out_trade_no].refunds] == [1200]
    assert_balanced()
