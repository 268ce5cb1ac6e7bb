"""The online account ledger: top-up, payment, subsidy; balanced after every operation (property
test); never below zero; retries idempotent; the database refuses an unbalanced posting."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citycard.platform.errors import DomainError
from citycard.tenants.accounts import services as a
from citycard.tenants.accounts.models import LedgerAccount, Leg, Posting
from citycard.tenants.accounts.selectors import ledger_totals, subsidy_payments
from citycard.tenants.cards import services as cards

from ..conftest import new_id

pytestmark = pytest.mark.django_db


@pytest.fixture
def accounts(holder):
    """Three active main cards with open online accounts."""
    out = []
    for _ in range(3):
        card = cards.card_issue_now(scheme_code="01", cardholder_id=holder().pk, actor="t")
        a.account_open(card_no=card.card_no, actor="t")
        out.append(card.card_no)
    return out


def assert_balanced():
    totals = ledger_totals()
    assert totals.unbalanced_postings == 0
    assert totals.legs_total_fen == 0 and totals.balances_total_fen == 0
    assert totals.balances_mismatched == 0
    assert not LedgerAccount.objects.filter(allow_negative=False, balance_fen__lt=0).exists()


def test_topup_pay_refund_and_refusals(accounts):
    card = accounts[0]
    a.account_topup(card_no=card, amount_fen=1000, idempotency_key="top-1", actor="t")
    again = a.account_topup(card_no=card, amount_fen=1000, idempotency_key="top-1", actor="t")
    assert Posting.objects.filter(idempotency_key="top-1").count() == 1 and again.amount_fen == 1000
    library = a.ledger_account_external(code="merchant:library", kind="merchant")
    payment = a.account_pay(
        card_no=card, amount_fen=700, payee=library, idempotency_key="pay-1", memo="", actor="t"
    )
    with pytest.raises(DomainError) as info:
        a.account_pay(
            card_no=card, amount_fen=301, payee=library, idempotency_key="pay-2", memo="", actor="t"
        )
    with pytest.raises(DomainError):  # only a party's payable is paid, never e.g. a bank clearing account
        a.account_pay(
            card_no=card,
            amount_fen=1,
            payee=a.ledger_account_external(code="topup:bank", kind="topup"),
            idempotency_key="pay-3",
            memo="",
            actor="t",
        )
    assert info.value.code == "insufficient_funds"
    assert payment.amount_fen == 700
    with pytest.raises(DomainError):
        a.account_topup(card_no=card, amount_fen=0, idempotency_key="top-0", actor="t")
    with pytest.raises(DomainError):
        a.account_topup(card_no=card, amount_fen=10.5, idempotency_key="top-f", actor="t")
    assert LedgerAccount.objects.get(card_no=card).balance_fen == 300
    assert_balanced()


def test_the_database_refuses_an_unbalanced_posting(accounts):
    holder_account = LedgerAccount.objects.get(card_no=accounts[0])
    with pytest.raises(IntegrityError, match="does not balance"), transaction.atomic():
        posting = Posting.objects.create(
            kind="topup", idempotency_key="bad", at=timezone.now(), amount_fen=100, actor="t"
        )
        Leg.objects.create(posting=posting, account=holder_account, amount_fen=100)
        with connection.cursor() as cur:
            cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
    assert not Posting.objects.filter(idempotency_key="bad").exists()


def test_balance_never_below_zero_even_bypassing_the_service(accounts):
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerAccount.objects.filter(card_no=accounts[0]).update(balance_fen=-1)


operations = st.lists(
    st.tuples(
        st.sampled_from(["topup", "pay", "subsidy"]),
        st.integers(min_value=0, max_value=2),
        st.integers(min_value=1, max_value=5000),
        st.booleans(),  # retry the same operation (same idempotency key)
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_ledger_balances_after_every_operation(accounts, ops):
    sid = transaction.savepoint()
    try:
        payments: list[int] = []
        for n, (op, who, amount, retry) in enumerate(ops):
            card = accounts[who]
            for _ in range(2 if retry else 1):
                key = f"{op}-{n}"
                try:
                    if op == "topup":
                        a.account_topup(card_no=card, amount_fen=amount, idempotency_key=key, actor="p")
                    elif op == "pay":
                        p = a.account_pay(
                            card_no=card,
                            amount_fen=amount,
                            payee=a.ledger_account_external(code="merchant:m", kind="merchant"),
                            idempotency_key=key,
                            memo="",
                            actor="p",
                        )
                        payments.append(p.pk)
                    elif op == "subsidy":
                        a.subsidy_programme_save(
                            code=f"p{n}", name="补贴", items=[{"item": "x", "amount_fen": amount}], actor="p"
                        )
                        a.subsidy_run(
                            programme_code=f"p{n}", period="2026-11", on=dt.date(2026, 11, 1), actor="p"
                        )
                except DomainError as exc:
                    assert exc.code == "insufficient_funds"
                assert_balanced()
    finally:
        transaction.savepoint_rollback(sid)


def test_subsidy_run_pays_eligible_once_with_items(holder):
    elderly = holder(categories=[{"code": "elderly", "valid_from": dt.date(2020, 1, 1)}])
    young = holder(id_number=new_id(birth=dt.date(1999, 1, 1)))
    numbers = []
    for person in (elderly, young):
        card = cards.card_issue_now(scheme_code="01", cardholder_id=person.pk, actor="t")
        a.account_open(card_no=card.card_no, actor="t")
        numbers.append(card.card_no)
    items = [{"item": "高龄津贴", "amount_fen": 10000}, {"item": "交通补贴", "amount_fen": 2500}]
    a.subsidy_programme_save(code="elderly-2026", name="敬老补贴", items=items, category="elderly", actor="t")
    run = a.subsidy_run(programme_code="elderly-2026", period="2026-11", on=dt.date(2026, 11, 1), actor="t")
    assert (run.payments, run.total_fen) == (1, 12500)
    assert (
        a.subsidy_run(programme_code="elderly-2026", period="2026-11", on=dt.date(2026, 11, 1), actor="t").pk
        == run.pk
    )
    assert LedgerAccount.objects.get(card_no=numbers[0]).balance_fen == 12500
    assert LedgerAccount.objects.get(card_no=numbers[1]).balance_fen == 0
    paid = list(subsidy_payments(cardholder_id=elderly.pk))
    assert [(i.item, i.amount_fen) for i in paid[0].items.all()] == [("高龄津贴", 10000), ("交通补贴", 2500)]
    assert paid[0].run.programme.name == "敬老补贴"
    assert_balanced()


def test_purse_load_moves_account_money_onto_the_chip_shadow(accounts):
    from citycard.tenants.accounts.models import PurseShadow
    from citycard.tenants.accounts.services import PurseMovement, purse_load, purse_shadow_apply

    card = accounts[0]
    a.account_topup(card_no=card, amount_fen=3000, idempotency_key="t-load", actor="t")
    purse_load(card_no=card, amount_fen=2000, idempotency_key="load-1", actor="t")
    purse_load(card_no=card, amount_fen=2000, idempotency_key="load-1", actor="t")  # a retry
    assert PurseShadow.objects.get(card_no=card).balance_fen == 2000
    assert LedgerAccount.objects.get(card_no=card).balance_fen == 1000
    at = dt.datetime(2026, 11, 5, 8, tzinfo=dt.UTC)
    assert purse_shadow_apply(movements=[PurseMovement(card, 1, 2000, 1800, at)]) == []
    with pytest.raises(DomainError) as info:
        purse_load(card_no=card, amount_fen=1001, idempotency_key="load-2", actor="t")
    assert info.value.code == "insufficient_funds"
    assert_balanced()
