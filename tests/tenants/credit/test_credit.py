"""Credit pay-later (信用付): lines granted by the city's rules, merchant payments and fares on credit
(balanced, never above the limit, idempotent), monthly bills, repayment from the online account and through
a bound channel's sandbox, overdue restriction through the hotlist lifted by repayment in full."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.utils import timezone

from citycard.platform.audit.models import AuditEntry
from citycard.platform.errors import Conflict, DomainError, NotFound
from citycard.tenants.accounts import services as accounts
from citycard.tenants.accounts.models import LedgerAccount
from citycard.tenants.accounts.selectors import ledger_totals
from citycard.tenants.cards.models import Cardholder, HotlistEntry
from citycard.tenants.credit import selectors as sel
from citycard.tenants.credit import services as credit
from citycard.tenants.credit.models import BillState, CreditBill, CreditItem, CreditLine, LineState
from citycard.tenants.merchants.models import Payment
from citycard.tenants.payments import services as payments
from tests.tenants.credit.conftest import LAST_MONTH, LAST_MONTH_DAY, TODAY, at
from tests.tenants.payments.conftest import deliver

pytestmark = pytest.mark.django_db

THIS_MONTH = TODAY.strftime("%Y-%m")


def assert_balanced():
    totals = ledger_totals()
    assert totals.unbalanced_postings == 0
    assert totals.legs_total_fen == 0 and totals.balances_total_fen == 0
    assert totals.balances_mismatched == 0


def test_rules_grant_lines_to_the_eligible_only_set_based(rules, insured_card, django_assert_max_num_queries):
    eligible = [insured_card() for _ in range(3)]
    uninsured = insured_card(insured=False)
    recent = insured_card(since=timezone.now() - dt.timedelta(days=30))
    with django_assert_max_num_queries(12):  # one pass, whatever the number of cardholders
        granted = credit.credit_grant(actor="t")
    assert sorted(line.card_no for line in granted) == sorted(eligible)
    assert {line.limit_fen for line in granted} == {50_000}
    assert all(line.state == LineState.ACTIVE for line in granted)
    assert credit.credit_grant(actor="t") == []  # granted once
    for card in (uninsured, recent):
        with pytest.raises(DomainError) as info:
            credit.credit_grant(card_no=card, actor="t")
        assert info.value.code == "not_eligible"
    credit.credit_rules_set(actor="t", require_insured=False)
    assert [line.card_no for line in credit.credit_grant(actor="t")] == [uninsured]
    credit.credit_rules_set(actor="t", birth_decade_min=1990, birth_decade_max=2000)
    old = insured_card()  # born in the 1980s
    with pytest.raises(DomainError):
        credit.credit_grant(card_no=old, actor="t")
    with pytest.raises(DomainError):
        credit.credit_rules_set(actor="t", due_day=31)


def test_rules_are_required(city, insured_card):
    with pytest.raises(NotFound) as info:
        credit.credit_grant(actor="t")
    assert info.value.code == "no_rules"


def test_pay_on_credit_is_balanced_idempotent_and_never_above_the_limit(line, parking):
    item = credit.credit_pay(
        merchant_code=parking.code, card_no=line.card_no, amount_fen=1_500, payment_id="park-1", actor="pos"
    )
    again = credit.credit_pay(
        merchant_code=parking.code, card_no=line.card_no, amount_fen=1_500, payment_id="park-1", actor="pos"
    )
    assert again.pk == item.pk and CreditItem.objects.count() == 1
    with pytest.raises(Conflict):
        credit.credit_pay(
            merchant_code=parking.code, card_no=line.card_no, amount_fen=900, payment_id="park-1", actor="pos"
        )
    assert sel.owed_fen(line) == 1_500
    payment = Payment.objects.get(payment_id="park-1")
    assert payment.means == "credit" and payment.settlement_id is not None  # settled to the merchant as usual
    assert LedgerAccount.objects.get(pk=parking.payable_id).balance_fen == 1_500
    with pytest.raises(DomainError) as info:
        credit.credit_pay(
            merchant_code=parking.code, card_no=line.card_no, amount_fen=48_501, payment_id="big", actor="pos"
        )
    assert info.value.code == "over_limit"
    assert not Payment.objects.filter(payment_id="big").exists()  # a refusal writes nothing
    credit.credit_pay(
        merchant_code=parking.code, card_no=line.card_no, amount_fen=48_500, payment_id="full", actor="pos"
    )
    assert sel.owed_fen(line) == 50_000
    assert_balanced()


def test_fares_deferred_onto_the_line(line):
    item = credit.credit_fare_defer(
        card_no=line.card_no, fare_id="ride-1", amount_fen=200, operator="嘉兴公交", actor="bus"
    )
    assert (
        credit.credit_fare_defer(
            card_no=line.card_no, fare_id="ride-1", amount_fen=200, operator="嘉兴公交", actor="bus"
        ).pk
        == item.pk
    )
    assert sel.owed_fen(line) == 200
    assert LedgerAccount.objects.get(code=credit.FARE_INCOME).balance_fen == 200
    assert_balanced()


def test_a_suspended_or_closed_line_takes_nothing(line, parking):
    credit.credit_line_state_set(card_no=line.card_no, state="suspended", reason="clerk", actor="t")
    with pytest.raises(DomainError) as info:
        credit.credit_pay(
            merchant_code=parking.code, card_no=line.card_no, amount_fen=100, payment_id="x", actor="p"
        )
    assert info.value.code == "line_not_active"
    credit.credit_line_state_set(card_no=line.card_no, state="closed", actor="t")
    with pytest.raises(Conflict):
        credit.credit_line_state_set(card_no=line.card_no, state="active", actor="t")


def test_monthly_bill_once_per_line_and_month(line, parking):
    for n, fen in enumerate([1_000, 2_345]):
        credit.credit_pay(
            merchant_code=parking.code,
            card_no=line.card_no,
            amount_fen=fen,
            payment_id=f"p{n}",
            actor="pos",
            at=at(LAST_MONTH_DAY - dt.timedelta(days=n)),
        )
    credit.credit_fare_defer(card_no=line.card_no, fare_id="now", amount_fen=300, operator="bus", actor="b")
    with pytest.raises(DomainError) as info:
        credit.credit_bills_generate(month=THIS_MONTH, actor="t")
    assert info.value.code == "month_not_over"
    (bill,) = credit.credit_bills_generate(month=LAST_MONTH, actor="t")
    assert credit.credit_bills_generate(month=LAST_MONTH, actor="t") == []
    assert CreditBill.objects.count() == 1
    assert (bill.items_fen, bill.full_due_fen, bill.minimum_due_fen) == (3_345, 3_345, 335)  # 10 %, half up
    assert bill.due_on == TODAY.replace(day=20) and bill.state == BillState.OPEN
    assert [i.payment_id for i in sel.bill_items(bill)] == ["p1", "p0"]
    assert not CreditItem.objects.get(payment_id="now").bill_id  # this month's fare waits for its bill
    assert sel.bill_of(card_no=line.card_no).pk == bill.pk


def test_repaid_ahead_of_the_bill_is_not_asked_again(line, parking, insured_card):
    credit.credit_pay(
        merchant_code=parking.code,
        card_no=line.card_no,
        amount_fen=1_000,
        payment_id="a",
        actor="p",
        at=at(LAST_MONTH_DAY),
    )
    accounts.account_topup(card_no=line.card_no, amount_fen=400, idempotency_key="top", actor="t")
    credit.credit_repay(card_no=line.card_no, amount_fen=400, key="early", actor="app")
    (bill,) = credit.credit_bills_generate(month=LAST_MONTH, actor="t")
    assert (bill.items_fen, bill.full_due_fen) == (1_000, 600)


def test_manual_repayment_from_the_online_account(line, billed):
    bill = billed(2_000)
    with pytest.raises(DomainError) as info:
        credit.credit_repay(card_no=line.card_no, amount_fen=2_000, key="r1", actor="app")
    assert info.value.code == "insufficient_funds"
    accounts.account_topup(card_no=line.card_no, amount_fen=5_000, idempotency_key="top", actor="t")
    with pytest.raises(DomainError) as info:
        credit.credit_repay(card_no=line.card_no, amount_fen=2_001, key="r1", actor="app")
    assert info.value.code == "over_owed"
    credit.credit_repay(card_no=line.card_no, amount_fen=500, key="r1", actor="app")
    credit.credit_repay(card_no=line.card_no, amount_fen=500, key="r1", actor="app")  # a retry
    bill.refresh_from_db()
    assert (bill.paid_fen, bill.state) == (500, BillState.OPEN)
    credit.credit_repay(card_no=line.card_no, amount_fen=1_500, key="r2", actor="app")
    bill.refresh_from_db()
    assert (bill.paid_fen, bill.state, sel.owed_fen(line)) == (2_000, BillState.PAID, 0)
    assert accounts.holder_account(line.card_no).balance_fen == 3_000
    assert [e.amount_fen for e in sel.history(card_no=line.card_no)] == [-1_500, -500, 2_000]
    assert_balanced()


def test_overdue_restricts_the_card_and_repayment_in_full_lifts_it(line, parking, billed, rules):
    bill = billed(3_000)
    assert credit.credit_overdue_run(on=bill.due_on + dt.timedelta(days=3), actor="t") == []  # within grace
    (late,) = credit.credit_overdue_run(on=bill.due_on + dt.timedelta(days=4), actor="t")
    assert late.pk == line.pk
    line.refresh_from_db()
    bill.refresh_from_db()
    assert (line.state, line.state_reason, bill.state) == (
        LineState.SUSPENDED,
        "credit_overdue",
        BillState.OVERDUE,
    )
    entry = HotlistEntry.objects.get(card_no=line.card_no, removed_at__isnull=True)
    assert entry.reason == "credit_overdue"
    credit.credit_overdue_run(on=bill.due_on + dt.timedelta(days=5), actor="t")  # again: nothing new
    assert HotlistEntry.objects.filter(card_no=line.card_no).count() == 1
    with pytest.raises(DomainError):
        credit.credit_pay(
            merchant_code=parking.code, card_no=line.card_no, amount_fen=10, payment_id="b", actor="p"
        )
    accounts.account_topup(card_no=line.card_no, amount_fen=3_000, idempotency_key="top", actor="t")
    credit.credit_repay(card_no=line.card_no, amount_fen=1_000, key="part", actor="app")
    line.refresh_from_db()
    assert line.state == LineState.SUSPENDED  # a part does not lift it
    credit.credit_repay(card_no=line.card_no, amount_fen=2_000, key="rest", actor="app")
    line.refresh_from_db()
    assert line.state == LineState.ACTIVE
    entry.refresh_from_db()
    assert entry.removed_at is not None and entry.version_removed > entry.version_added
    assert_balanced()


def test_automatic_repayment_through_the_bound_channel(line, billed, channel, inbox):
    sandbox, code = channel("wechat", "credit-wechat")
    bill = billed(2_500)
    assert credit.credit_autorepay_run(on=bill.due_on, actor="t") == {
        "applied": 0,
        "opened": 0,
        "skipped": 1,
        "failed": 0,
    }
    payments.binding_create(
        channel_code=code, card_no=line.card_no, agreement_no="wx-contract-1", actor="app"
    )
    assert (
        credit.credit_autorepay_run(on=bill.due_on - dt.timedelta(days=1), actor="t")["opened"] == 0
    )  # not due
    assert credit.credit_autorepay_run(on=bill.due_on, actor="t")["opened"] == 1
    assert credit.credit_autorepay_run(on=bill.due_on, actor="t")["opened"] == 1  # the same order again
    order = payments.channel_collect(
        card_no=line.card_no,
        amount_fen=2_500,
        request_key=f"credit-collect:{bill.pk}:0",
        actor="t",
        description="x",
    )
    sandbox.payer_pays(order.payment_params)  # the provider debits the payer under the agreement
    deliver(inbox, sandbox, code)
    result = credit.credit_autorepay_run(on=bill.due_on, actor="t")
    assert (result["applied"], result["opened"]) == (1, 0)
    bill.refresh_from_db()
    assert bill.state == BillState.PAID and sel.owed_fen(line) == 0
    assert accounts.holder_account(line.card_no).balance_fen == 0  # collected in, moved on to the line
    assert credit.credit_collections_apply(actor="t") == []
    assert_balanced()


def test_a_rules_change_re_evaluates_the_existing_lines(
    line, parking, insured_card, django_assert_max_num_queries
):
    other = insured_card()
    credit.credit_grant(card_no=other, actor="t")
    credit.credit_pay(
        merchant_code=parking.code, card_no=line.card_no, amount_fen=30_000, payment_id="p-big", actor="pos"
    )
    # The limit lowered below what the line owes: it blocks further spending, the debt stays what it is.
    with django_assert_max_num_queries(20):  # set-based, whatever the number of lines
        credit.credit_rules_set(actor="clerk", limit_fen=20_000)
    assert set(CreditLine.objects.values_list("limit_fen", flat=True)) == {20_000}
    assert sel.owed_fen(line) == 30_000
    with pytest.raises(DomainError) as info:
        credit.credit_pay(
            merchant_code=parking.code, card_no=line.card_no, amount_fen=1, payment_id="p-more", actor="pos"
        )
    assert info.value.code == "over_limit"
    credit.credit_pay(
        merchant_code=parking.code, card_no=other, amount_fen=20_000, payment_id="p-other", actor="pos"
    )
    # The rules narrowed (born in the 1990s only): the lines whose cards no longer meet them are suspended;
    # widened again, they are active again. A line suspended as overdue is left alone.
    credit.credit_line_state_set(card_no=other, state="suspended", reason=credit.OVERDUE_REASON, actor="t")
    credit.credit_rules_set(actor="clerk", birth_decade_min=1990, birth_decade_max=2000)
    mine = CreditLine.objects.get(pk=line.pk)
    assert (mine.state, mine.state_reason) == (LineState.SUSPENDED, credit.RULES_REASON)
    assert CreditLine.objects.get(card_no=other).state_reason == credit.OVERDUE_REASON
    credit.credit_rules_set(actor="clerk", birth_decade_min=1950)
    assert CreditLine.objects.get(pk=line.pk).state == LineState.ACTIVE
    assert CreditLine.objects.get(card_no=other).state_reason == credit.OVERDUE_REASON
    audit = [
        json.loads(e.payload)
        for e in AuditEntry.objects.filter(action="credit.lines_reevaluate", actor="clerk").order_by("seq")
    ]
    assert [(e["limit_changed"], e["suspended"], e["resumed"]) for e in audit] == [
        (2, 0, 0),
        (0, 1, 0),
        (0, 0, 1),
    ]
    assert_balanced()


def test_a_closed_line_is_reopened_with_the_rules_checked_again(line, rules):
    with pytest.raises(Conflict) as info:
        credit.credit_line_reopen(card_no=line.card_no, actor="t")
    assert info.value.code == "line_not_closed"
    credit.credit_line_state_set(card_no=line.card_no, state="closed", reason="asked", actor="t")
    credit.credit_rules_set(actor="t", require_insured=False, limit_fen=30_000)
    Cardholder.objects.filter(pk=line.cardholder_id).update(birth_decade=1940)
    with pytest.raises(DomainError) as info:
        credit.credit_line_reopen(card_no=line.card_no, actor="t")
    assert info.value.code == "not_eligible"
    Cardholder.objects.filter(pk=line.cardholder_id).update(birth_decade=1980)
    reopened = credit.credit_line_reopen(card_no=line.card_no, actor="t")
    assert (reopened.state, reopened.limit_fen) == (LineState.ACTIVE, 30_000)
    assert AuditEntry.objects.filter(action="credit.line_reopen", object_id=line.card_no).exists()
