"""Random merchant activity replayed (hypothesis): payments by online account and e-purse taps from the
merchant's terminal (own cards, and Hangzhou's cards roaming here), partial and full refunds (some over the
payment, some retried), daily settlements one by one or all at once (some retried; an item of a settled day
joins today's open settlement), and roaming payments the issuer rejected, read from a cycle's
reconciliation rows (some read again): charged back from the payable while their settlement is open, owed
back by the merchant once settled; after every step each ledger account's balance equals an independent
running sum kept here, fees rounded half-up with Decimal (not ``bps_of``), and the whole ledger balances."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citycard.platform.errors import DomainError
from citycard.tenants.accounts import services as a
from citycard.tenants.accounts.models import LedgerAccount
from citycard.tenants.accounts.selectors import ledger_totals
from citycard.tenants.cards import services as cards
from citycard.tenants.merchants import services as m
from citycard.tenants.merchants.models import Payment
from citycard.tenants.terminals import checks
from citycard.tenants.terminals.ingest import batch_ingest
from citycard.tenants.terminals.simulate import SimCard, SimTerminal, card_number
from citycard.terminal_kit.beijing import BEIJING

pytestmark = pytest.mark.django_db

TODAY = timezone.now().astimezone(BEIJING).date()
DAYS = [TODAY - dt.timedelta(days=n) for n in (3, 2, 1)]
MERCHANTS = {"canteen": 60, "parking": 35}


def fee(takings: int, bps: int) -> int:
    exact = Decimal(abs(takings)) * bps / Decimal(10_000)
    magnitude = int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return magnitude if takings >= 0 else -magnitude


@pytest.fixture
def world(holder, city):
    numbers = []
    for n in range(2):
        number = cards.card_issue_now(scheme_code="01", cardholder_id=holder().pk, actor="t").card_no
        a.account_open(card_no=number, actor="t")
        a.account_topup(card_no=number, amount_fen=20_000, idempotency_key=f"seed-{n}", actor="t")
        numbers.append(number)
    sims = {}
    for code, bps in MERCHANTS.items():
        m.merchant_onboard(
            code=code,
            name=code,
            licence_no=m.licence_no_build(division="330400", organisation=f"P{bps:08d}"),
            category="5814" if code == "canteen" else "7523",
            settlement_bank="嘉兴银行",
            settlement_account="622202000011112222",
            fee_bps=bps,
            accepted_means=["purse", "account"],
            actor="t",
        )
        sims[code] = SimTerminal(f"POS-{code}", "jiaxing", service="merchant", route=code)
        m.merchant_terminal_register(
            merchant_code=code,
            terminal_id=sims[code].terminal_id,
            public_key=sims[code].public_key,
            location="x",
            actor="t",
        )
    return city, numbers, sims


ops = st.lists(
    st.tuples(
        st.sampled_from(["pay", "tap", "roam_tap", "reject", "refund", "settle", "settle_all"]),
        st.integers(min_value=0, max_value=1),  # card
        st.sampled_from(sorted(MERCHANTS)),
        st.integers(min_value=1, max_value=4000),  # amount
        st.integers(min_value=0, max_value=2),  # day
        st.booleans(),  # retried
    ),
    min_size=1,
    max_size=15,
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=ops)
def test_every_balance_equals_an_independent_sum(world, steps):
    city, numbers, sims = world
    checks.route_cache_clear()
    sid = transaction.savepoint()
    try:
        expected: dict[str, int] = defaultdict(int)
        for number in numbers:
            expected[f"holder:{LedgerAccount.objects.get(card_no=number).cardholder_id}"] = 20_000
            expected["topup:bank"] -= 20_000
        paid: list[tuple[str, str, str, int, dt.date]] = []  # payment id, merchant, card, amount, day
        refunded: dict[str, int] = defaultdict(int)  # by payment id
        open_items: dict[tuple[str, dt.date], int] = defaultdict(int)  # what each open settlement holds
        settled: set[tuple[str, dt.date]] = set()
        chips = {n: SimCard(n, balance_fen=10**7) for n in numbers}
        # Hangzhou's cards roaming here (routed to their issuer), and their payments: id, tx, merchant, amount,
        # the settlement it joined
        visitors = [SimCard(card_number("330100", 7000 + n), balance_fen=10**7) for n in range(2)]
        roaming: list[tuple[str, int, str, int, tuple[str, dt.date]]] = []
        rejected: set[str] = set()

        def joins(code: str, day: dt.date) -> tuple[str, dt.date]:
            """The settlement an item joins: its day's, or today's once its day is settled."""
            return (code, TODAY) if (code, day) in settled else (code, day)

        holder_of = {n: f"holder:{LedgerAccount.objects.get(card_no=n).cardholder_id}" for n in numbers}
        for i, (op, who, merchant, amount, d, retried) in enumerate(steps):
            card, day = numbers[who], DAYS[d]
            when = dt.datetime.combine(day, dt.time(10, 0), tzinfo=BEIJING) + dt.timedelta(minutes=i)
            for attempt in range(2 if retried else 1):
                try:
                    if op == "pay":
                        p = m.merchant_pay(
                            merchant_code=merchant,
                            card_no=card,
                            amount_fen=amount,
                            payment_id=f"p{i}",
                            at=when,
                            actor="h",
                        )
                        if not any(x[0] == p.payment_id for x in paid):
                            paid.append((p.payment_id, merchant, card, amount, day))
                            expected[holder_of[card]] -= amount
                            expected[f"merchant:{merchant}"] += amount
                            open_items[joins(merchant, day)] += amount
                    elif op == "tap" and attempt == 0:  # a resent batch is a duplicate: no retry here
                        sim = sims[merchant]
                        tap = sim.tap(chips[card], at=when, amount_fen=amount)
                        batch_ingest(tenant=city, body=sim.sign(sim.payload([tap], created_at=when)))
                        assert m.merchant_taps_book(actor="h") == 1
                        booked = Payment.objects.filter(means="purse").order_by("-id").first()
                        paid.append((booked.payment_id, merchant, card, amount, day))
                        expected["purse:float"] -= amount
                        expected[f"merchant:{merchant}"] += amount
                        open_items[joins(merchant, day)] += amount
                    elif op == "roam_tap" and attempt == 0:
                        sim = sims[merchant]
                        tap = sim.tap(visitors[who], at=when, amount_fen=amount)
                        batch_ingest(tenant=city, body=sim.sign(sim.payload([tap], created_at=when)))
                        assert m.merchant_taps_book(actor="h") == 1
                        booked = Payment.objects.order_by("-id").first()
                        assert booked.issuer_tenant == "hangzhou"
                        roaming.append(
                            (booked.payment_id, booked.transaction_id, merchant, amount, joins(merchant, day))
                        )
                        expected["interop:hangzhou"] -= amount
                        expected[f"merchant:{merchant}"] += amount
                        open_items[joins(merchant, day)] += amount
                    elif op == "reject" and roaming:
                        pid, tx_id, payee, total, joined = roaming[amount % len(roaming)]
                        row = {
                            "record_id": f"{city.code}-{tx_id}",
                            "role": "acquirer",
                            "counterparty": "hangzhou",
                            "status": "rejected",
                            "reason": "tac_invalid",
                        }
                        valid = {**row, "record_id": f"{city.code}-{tx_id + 10**9}", "status": "valid"}
                        count = m.merchant_roaming_rejections_book({"cycle": f"c{i}"}, [valid, row], when)
                        assert count == (0 if pid in rejected else 1)
                        if pid not in rejected:
                            rejected.add(pid)
                            expected["interop:hangzhou"] += total
                            if joined in settled:  # paid out already: the merchant owes it back
                                expected[f"{m.CHARGEBACK_PREFIX}{payee}"] -= total
                            else:  # its settlement will not pay it
                                expected[f"merchant:{payee}"] -= total
                                open_items[joined] -= total
                    elif op == "refund" and paid:
                        pid, payee, payer, total, _ = paid[amount % len(paid)]
                        refund_amount = amount % (total + 50) + 1
                        over = refunded[pid] + refund_amount > total
                        m.payment_refund(
                            payment_id=pid, refund_id=f"r{i}", amount_fen=refund_amount, at=when, actor="h"
                        )
                        assert attempt == 1 or not over
                        if attempt == 0:
                            refunded[pid] += refund_amount
                            expected[f"merchant:{payee}"] -= refund_amount
                            expected[holder_of[payer]] += refund_amount
                            open_items[joins(payee, day)] -= refund_amount
                    elif op in ("settle", "settle_all"):
                        if op == "settle":
                            m.merchant_settle(merchant_code=merchant, day=day, actor="h")
                        else:  # every merchant at once, by the set-based path
                            m.merchants_settle_day(day=day, actor="h")
                        for code in [merchant] if op == "settle" else sorted(MERCHANTS):
                            if (code, day) in settled:
                                continue
                            settled.add((code, day))
                            takings = open_items.pop((code, day), 0)
                            f = fee(takings, MERCHANTS[code])
                            expected[f"merchant:{code}"] -= takings
                            expected[m.FEE_INCOME] += f
                            expected[m.SETTLEMENT_CLEARING] += takings - f
                except DomainError as exc:
                    assert exc.code in {"over_refund", "insufficient_funds"}, exc
            actual = {acc.code: acc.balance_fen for acc in LedgerAccount.objects.all() if acc.balance_fen}
            assert actual == {k: v for k, v in expected.items() if v}
            totals = ledger_totals()
            assert totals.unbalanced_postings == 0 and totals.balances_mismatched == 0
            assert totals.balances_total_fen == 0
    finally:
        transaction.savepoint_rollback(sid)
