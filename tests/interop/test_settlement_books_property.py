"""Random roaming merchant activity between two cities and a county, cleared and settled through the real
interop layer (hypothesis): e-purse purchases of each city's cards at the other's merchants (and at the
county's, which clears as its city), records sent that the acquirer's ledger never booked, and merchant
cycles run to settlement at random points. After every settlement each tenant's interop accounts, settlement
bank account, fee accounts and e-purse float equal an independent running sum kept here (fees rounded
half-up with Decimal, not ``bps_of``), the whole ledger balances, and each participant's settlement bank
accounts (the city's and its county's) moved by its net position less the records its ledgers do not hold."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.db import transaction
from django.utils import timezone
from django_tenants.utils import tenant_context
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citycard.interop.models import ClearingCycle, ClearingRecord, NetPosition
from citycard.interop.services.cycles import cycle_run
from citycard.interop.services.messages import outbox_collect
from citycard.tenants.accounts.models import LedgerAccount
from citycard.tenants.accounts.selectors import ledger_totals
from citycard.tenants.exchange.services import outbox_put_clearing_records
from citycard.tenants.merchants import services as merchants
from citycard.tenants.settlement.services import SETTLEMENT_BANK
from citycard.tenants.terminals import checks
from citycard.tenants.terminals.ingest import batch_ingest
from citycard.tenants.terminals.simulate import SimCard, card_number

from .conftest import SHANGHAI, cards_known, record
from .test_settlement_books import _shop, yrd_merchant  # noqa: F401

pytestmark = pytest.mark.django_db

ISSUER_BPS, NETWORK_BPS = 30, 5
SHOPS = {
    "jiaxing": ("330400", "MA0000011"),
    "hangzhou": ("330100", "MA0000012"),
    "tonglu": ("330122", "MA0000013"),
}
CITY_OF = {"jiaxing": "jiaxing", "hangzhou": "hangzhou", "tonglu": "hangzhou"}
ISSUER_OF = {"jiaxing": "hangzhou", "hangzhou": "jiaxing", "tonglu": "jiaxing"}  # whose cards each shop takes
WATCHED = ("interop:", SETTLEMENT_BANK, "fee:interchange", "fee-expense:interchange", "purse:float")


def fee(amount: int, bps: int) -> int:
    return int((Decimal(amount) * bps / Decimal(10_000)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


@pytest.fixture
def world(tenant, yrd_merchant):  # noqa: F811
    checks.route_cache_clear()
    tenants = {code: tenant(code) for code in SHOPS}
    sims = {code: _shop(tenants[code], f"{code}-prop", *SHOPS[code]) for code in SHOPS}
    cards = {}
    for city, division in (("jiaxing", "330400"), ("hangzhou", "330100")):
        numbers = [card_number(division, 7000 + n) for n in range(3)]
        cards_known(tenants[city], numbers)
        cards[city] = [SimCard(n, balance_fen=10**7) for n in numbers]
    return tenants, sims, cards


ops = st.lists(
    st.tuples(
        st.sampled_from(["sell", "sell", "sell", "stray", "settle"]),
        st.sampled_from(sorted(SHOPS)),
        st.integers(min_value=0, max_value=2),  # card
        st.integers(min_value=1, max_value=5000),  # amount
    ),
    min_size=1,
    max_size=8,
)


def _watched(tenant) -> dict[str, int]:
    with tenant_context(tenant):
        totals = ledger_totals()
        assert (totals.unbalanced_postings, totals.balances_total_fen, totals.balances_mismatched) == (
            0,
            0,
            0,
        )
        return {
            a.code: a.balance_fen
            for a in LedgerAccount.objects.all()
            if a.balance_fen and a.code.startswith(WATCHED)
        }


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=ops)
def test_every_settled_balance_equals_an_independent_sum(world, steps):
    tenants, sims, cards = world
    sid = transaction.savepoint()
    try:
        expected: dict[str, dict[str, int]] = {code: defaultdict(int) for code in SHOPS}
        pending: list[tuple[str, str, int, bool]] = []  # record id, acquiring schema, amount, on its ledger
        net: dict[str, int] = defaultdict(int)  # each participant's net positions, summed over the cycles run
        unheld: dict[str, int] = defaultdict(int)  # per participant: what the records its ledgers miss settle
        at = timezone.now().astimezone(SHANGHAI).replace(microsecond=0) - dt.timedelta(hours=3)
        for i, (op, shop, card, amount) in enumerate([*steps, ("settle", "jiaxing", 0, 1)]):  # ends settled
            when = at + dt.timedelta(seconds=i)
            issuer = ISSUER_OF[shop]
            if op == "sell":
                sim = sims[shop]
                with tenant_context(tenants[shop]):
                    tap = sim.tap(cards[issuer][card], at=when, amount_fen=amount)
                    assert batch_ingest(
                        tenant=tenants[shop], body=sim.sign(sim.payload([tap], created_at=when))
                    ).accepted
                    assert merchants.merchant_taps_book(actor="h") == 1
                expected[shop][f"interop:{issuer}"] -= amount  # the acquirer's receivable
                pending.append(("", shop, amount, True))
            elif op == "stray":  # sent, never on the acquirer's ledger: a difference there
                r = record(
                    acquirer=CITY_OF[shop],
                    issuer=issuer,
                    issuer_division=cards[issuer][0].card_no[:6],
                    serial=8000 + i,
                    amount=amount,
                    when=when,
                )
                r.update(service="merchant", route=f"{shop}-prop")
                cards_known(tenants[issuer], [r["card_no"]])
                with tenant_context(tenants[shop]):
                    outbox_put_clearing_records([r], "h", now=when)
                pending.append((f"{shop}-{r['source_tx_id']}", shop, amount, False))
            for code in SHOPS:
                outbox_collect(tenant=tenants[code], now=timezone.now())
            if op != "settle" or not pending:
                continue
            cycle_ids = sorted(
                set(
                    ClearingRecord.objects.filter(
                        cycle__agreement__service="merchant", cycle__state="open"
                    ).values_list("cycle_id", flat=True)
                )
            )
            for cycle in ClearingCycle.objects.filter(pk__in=cycle_ids).order_by("business_date"):
                cycle = cycle_run(cycle=cycle, now=cycle.cut_off_at + dt.timedelta(minutes=1))
                for p in NetPosition.objects.filter(cycle=cycle):
                    net[p.participant] += p.net_fen
            for _rid, acquirer, a, held in pending:
                issuer, city = ISSUER_OF[acquirer], CITY_OF[acquirer]
                fi, fn = fee(a, ISSUER_BPS), fee(a, NETWORK_BPS)
                # the issuer: float −a, payable +a at validation; fee −Fi; settlement −(a − Fi)
                expected[issuer]["purse:float"] -= a
                expected[issuer]["fee:interchange"] += fi
                expected[issuer][SETTLEMENT_BANK] += a - fi
                if held:  # the acquirer: receivable back to zero, fees paid, the rest received
                    expected[acquirer][f"interop:{issuer}"] += a
                    expected[acquirer]["fee-expense:interchange"] -= fi + fn
                    expected[acquirer][SETTLEMENT_BANK] -= a - fi - fn
                else:
                    unheld[city] += a - fi - fn
            pending.clear()
            for code in SHOPS:
                assert _watched(tenants[code]) == {k: v for k, v in expected[code].items() if v}, code
            # every city's settlement bank accounts (with its county's) moved by its net position, less what
            # its ledgers do not hold; Σ net = 0 with the operator's fees
            assert sum(net.values()) == 0
            for city, schemas in (("jiaxing", ["jiaxing"]), ("hangzhou", ["hangzhou", "tonglu"])):
                moved = sum(expected[s][SETTLEMENT_BANK] for s in schemas)
                assert -moved == net[city] - unheld[city]
    finally:
        transaction.savepoint_rollback(sid)
