"""A month of random credit activity replayed (hypothesis): payments at a merchant and fares on credit
(some over the limit, some retried), rides paid by citizen code uploaded by a bus and booked (deferred onto
the line, or charged to the online account, or left unpaid and asked again), top-ups and repayments (some
above what is owed or what the online account holds), the month's bill, overdue runs; after every step each
ledger account's balance equals an independent running sum kept here, each bill's outstanding amount and
each line's state and hotlisting follow the model, and the whole ledger balances."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citycard.platform.errors import DomainError
from citycard.tenants.accounts import services as accounts
from citycard.tenants.accounts.models import LedgerAccount
from citycard.tenants.accounts.selectors import ledger_totals
from citycard.tenants.cards.models import HotlistEntry
from citycard.tenants.credit import services as credit
from citycard.tenants.credit.models import CreditBill, CreditLine
from citycard.tenants.entitlements.acceptance import citizen_code_issue
from citycard.tenants.terminals.ingest import batch_ingest
from citycard.tenants.terminals.services import terminal_register
from citycard.tenants.terminals.simulate import SimCard, SimTerminal
from citycard.terminal_kit.beijing import BEIJING
from tests.tenants.credit.test_credit import LAST_MONTH, LAST_MONTH_DAY, TODAY

pytestmark = pytest.mark.django_db
LIMIT = 5_000


@pytest.fixture
def world(city, insured_card, parking):
    credit.credit_rules_set(actor="t", limit_fen=LIMIT, grace_days=2)
    numbers = [insured_card(), insured_card()]
    credit.credit_grant(actor="t")
    bus = SimTerminal("JX-BUS-QRP", city.code, service="bus", route="K2")
    terminal_register(
        terminal_id=bus.terminal_id,
        operator="嘉兴公交",
        department="transport",
        service="bus",
        route="K2",
        public_key=bus.public_key,
        actor="t",
    )
    return numbers, parking, (city, bus)


ops = st.lists(
    st.tuples(
        st.sampled_from(["pay", "fare", "ride", "topup", "repay", "bill", "overdue"]),
        st.integers(min_value=0, max_value=1),  # card
        st.integers(min_value=1, max_value=3_000),  # amount
        st.booleans(),  # retried
    ),
    min_size=1,
    max_size=18,
)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=ops)
def test_every_balance_equals_an_independent_sum(world, steps):
    numbers, parking, (city, bus) = world
    sid = transaction.savepoint()
    try:
        expected: dict[str, int] = defaultdict(int)
        holder = {n: f"holder:{LedgerAccount.objects.get(card_no=n).cardholder_id}" for n in numbers}
        owed = dict.fromkeys(numbers, 0)
        last_month = dict.fromkeys(numbers, 0)  # items of the billed month
        this_month = dict.fromkeys(numbers, 0)
        outstanding: dict[str, int] = {}  # the bill's outstanding amount, once billed
        suspended = dict.fromkeys(numbers, False)
        billed = False
        due_on = TODAY.replace(day=20)
        unpaid: list[tuple[str, int]] = []  # citizen-code rides the online account could not pay yet
        for i, (op, who, amount, retried) in enumerate(steps):
            card = numbers[who]
            when = dt.datetime.combine(LAST_MONTH_DAY if not billed else TODAY, dt.time(9), tzinfo=BEIJING)
            when += dt.timedelta(minutes=i)
            for attempt in range(2 if retried else 1):
                first = attempt == 0
                try:
                    if op in ("pay", "fare"):
                        allowed = not suspended[card] and owed[card] + amount <= LIMIT
                        if op == "pay":
                            credit.credit_pay(
                                merchant_code=parking.code,
                                card_no=card,
                                amount_fen=amount,
                                payment_id=f"p{i}",
                                actor="pos",
                                at=when,
                            )
                        else:
                            credit.credit_fare_defer(
                                card_no=card,
                                fare_id=f"f{i}",
                                amount_fen=amount,
                                operator="bus",
                                actor="bus",
                                at=when,
                            )
                        assert allowed or not first
                        if first:
                            owed[card] += amount
                            expected[f"credit:{card}"] -= amount
                            expected[parking.payable.code if op == "pay" else credit.FARE_INCOME] += amount
                            (this_month if billed else last_month)[card] += amount
                    elif op == "ride":
                        if first:  # the bus uploads the ride once; a retry only books again
                            tap = bus.tap(SimCard(card, balance_fen=0), at=when, amount_fen=amount)
                            code = citizen_code_issue(card_no=card, at=when - dt.timedelta(seconds=5))
                            ride = {**tap, "card_scheme": "04", "card_counter": 0, "code": code}
                            body = bus.sign(bus.payload([ride], created_at=when))
                            assert batch_ingest(tenant=city, body=body, received_at=when).accepted == 1
                            unpaid.append((card, amount))
                        booked = credit.online_fares_book(actor="bus")
                        counts = {"deferred": 0, "charged": 0, "unpaid": 0, "held": 0, "waiting": 0}
                        left = []
                        for rider, fare in unpaid:  # the model: oldest tap first, line first, then account
                            if not suspended[rider] and owed[rider] + fare <= LIMIT:
                                counts["deferred"] += 1
                                owed[rider] += fare
                                expected[f"credit:{rider}"] -= fare
                                expected[credit.FARE_INCOME] += fare
                                (this_month if billed else last_month)[rider] += fare
                            elif expected[holder[rider]] >= fare:
                                counts["charged"] += 1
                                expected[holder[rider]] -= fare
                                expected[credit.ONLINE_FARE_INCOME] += fare
                            else:
                                counts["unpaid"] += 1
                                left.append((rider, fare))
                        unpaid = left
                        assert booked == counts
                    elif op == "topup":
                        accounts.account_topup(
                            card_no=card, amount_fen=amount, idempotency_key=f"t{i}", actor="t"
                        )
                        if first:
                            expected[holder[card]] += amount
                            expected["topup:bank"] -= amount
                    elif op == "repay":
                        allowed = amount <= owed[card] and amount <= expected[holder[card]]
                        credit.credit_repay(card_no=card, amount_fen=amount, key=f"r{i}", actor="app")
                        assert allowed or not first
                        if first:
                            owed[card] -= amount
                            expected[holder[card]] -= amount
                            expected[f"credit:{card}"] += amount
                            if card in outstanding:
                                outstanding[card] = max(0, outstanding[card] - amount)
                                if outstanding[card] == 0:
                                    suspended[card] = False
                            if card not in outstanding and not billed:
                                last_month[card] = max(
                                    0, last_month[card] - amount
                                )  # repaid ahead of the bill
                    elif op == "bill" and first:
                        bills = credit.credit_bills_generate(month=LAST_MONTH, actor="t")
                        assert len(bills) == (0 if billed else sum(1 for n in numbers if last_month[n]))
                        if not billed:
                            billed = True
                            for n in numbers:
                                if last_month[n]:
                                    outstanding[n] = last_month[n]
                    elif op == "overdue":
                        credit.credit_overdue_run(on=due_on + dt.timedelta(days=3), actor="t")
                        for n, left in outstanding.items():
                            if left:
                                suspended[n] = True
                except DomainError as exc:
                    assert first, exc  # a retry repeats a done action, never a refused one
                    assert exc.code in {"over_limit", "line_not_active", "over_owed", "insufficient_funds"}, (
                        exc
                    )
                    break  # refused: nothing was written, nothing to retry
            actual = {acc.code: acc.balance_fen for acc in LedgerAccount.objects.all() if acc.balance_fen}
            assert actual == {k: v for k, v in expected.items() if v}
            for n in numbers:
                line = CreditLine.objects.get(card_no=n)
                assert (line.state == "suspended") == suspended[n]
                listed = HotlistEntry.objects.filter(
                    card_no=n, removed_at__isnull=True, reason="credit_overdue"
                )
                assert listed.exists() == suspended[n]
                bill = CreditBill.objects.filter(line=line, month=LAST_MONTH).first()
                assert (bill.outstanding_fen if bill else None) == outstanding.get(n)
            totals = ledger_totals()
            assert totals.unbalanced_postings == 0 and totals.balances_mismatched == 0
            assert totals.balances_total_fen == 0
    finally:
        transaction.savepoint_rollback(sid)
