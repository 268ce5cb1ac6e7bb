"""A settled merchant-payment cycle on each tenant's ledger (清算资金结算入账), end to end through the interop
layer: roaming cards' e-purse purchases at merchants' POS in two cities (and a county) are uploaded, booked on
both sides (the acquirer's receivable, the issuer's payable), cleared, netted and settled; each tenant then
books, from the reconciliation file the settlement delivered, the cycle's fees and one settlement posting
that brings its ``interop:<counterparty>`` accounts back to what later cycles have not settled, against its
settlement bank account, whose movement is its net position. What the file and a ledger disagree on is a
difference for a clerk, never hidden."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from django_tenants.utils import tenant_context

from citycard.interop.models import ClearingCycle, ClearingRecord
from citycard.interop.services.agreements import agreement_set
from citycard.interop.services.cycles import cycle_get_or_create, cycle_run
from citycard.interop.services.messages import message_deliver, outbox_collect
from citycard.interop.terms import agreement_business_date
from citycard.platform.audit.models import AuditEntry
from citycard.platform.keys import tenant_card_tac_master
from citycard.platform.models import Tenant
from citycard.platform.services import user_create
from citycard.tenants.accounts.models import LedgerAccount, Posting
from citycard.tenants.accounts.selectors import ledger_totals
from citycard.tenants.exchange.models import InboxMessage
from citycard.tenants.merchants import services as merchants
from citycard.tenants.settlement import services as settlement
from citycard.tenants.settlement.models import CycleSettlement, SettlementDifference
from citycard.tenants.settlement.services import SETTLEMENT_BANK
from citycard.tenants.terminals import checks
from citycard.tenants.terminals.ingest import batch_ingest
from citycard.tenants.terminals.simulate import SimCard, SimTerminal, card_number

from .conftest import SHANGHAI, cards_known, record

pytestmark = pytest.mark.django_db
JX = {"HTTP_HOST": "jiaxing.localhost"}


@pytest.fixture
def yrd_merchant(db):
    return agreement_set(
        network_code="yrd",
        service="merchant",
        valid_from=dt.date(2020, 1, 1),
        issuer_fee_bps=30,
        network_fee_bps=5,
        cut_off=dt.time(4, 0),
        dispute_window_days=30,
        actor="test",
    )


def _shop(tenant: Tenant, code: str, division: str, organisation: str) -> SimTerminal:
    """A merchant of ``tenant`` accepting the e-purse, with a POS whose TACs verify for both cities' cards."""
    masters = {
        t.division_code: tenant_card_tac_master(tenant=t)
        for t in Tenant.objects.filter(code__in=["hangzhou", "jiaxing"])
    }
    sim = SimTerminal(f"{code.upper()}-POS", tenant.code, service="merchant", route=code, tac_masters=masters)
    with tenant_context(tenant):
        merchants.merchant_onboard(
            code=code,
            name=f"{code} 食堂",
            licence_no=merchants.licence_no_build(division=division, organisation=organisation),
            category="5814",
            settlement_bank="银行",
            settlement_account="6222020000123456789",
            fee_bps=60,
            accepted_means=["purse"],
            actor="test",
        )
        merchants.merchant_terminal_register(
            merchant_code=code,
            terminal_id=sim.terminal_id,
            public_key=sim.public_key,
            location="一楼",
            actor="test",
        )
    return sim


def _sell(
    tenant: Tenant, sim: SimTerminal, cards: list[SimCard], amounts: list[int], at: dt.datetime
) -> None:
    """The POS's purchases, uploaded signed, booked as the merchant's payments, and collected by interop."""
    with tenant_context(tenant):
        taps = [
            sim.tap(card, at=at + dt.timedelta(seconds=i), amount_fen=amount)
            for i, (card, amount) in enumerate(zip(cards, amounts, strict=True))
        ]
        result = batch_ingest(
            tenant=tenant, body=sim.sign(sim.payload(taps, created_at=at + dt.timedelta(minutes=1)))
        )
        assert result.accepted == len(taps)
        assert merchants.merchant_taps_book(actor="test") == len(taps)
    assert outbox_collect(tenant=tenant, now=timezone.now())["collected"] == 1


def _cards(issuer: Tenant, serials: range, *, known: bool = True) -> list[SimCard]:
    numbers = [card_number(issuer.division_code, serial) for serial in serials]
    if known:
        cards_known(issuer, numbers)
    return [SimCard(number) for number in numbers]


def _run(agreement, at: dt.datetime) -> ClearingCycle:
    day = agreement_business_date(agreement=agreement, at=at)
    cycle = cycle_get_or_create(network_code="yrd", service="merchant", business_date=day)
    return cycle_run(cycle=cycle, now=cycle.cut_off_at + dt.timedelta(minutes=1))


def _books(tenant: Tenant) -> dict[str, int]:
    """The interop and settlement bank balances of a tenant's ledger, and its whole-ledger invariants."""
    with tenant_context(tenant):
        totals = ledger_totals()
        assert (totals.unbalanced_postings, totals.balances_total_fen, totals.balances_mismatched) == (
            0,
            0,
            0,
        )
        return dict(
            LedgerAccount.objects.filter(code__startswith="interop:").values_list("code", "balance_fen")
        ) | dict(LedgerAccount.objects.filter(code=SETTLEMENT_BANK).values_list("code", "balance_fen"))


def _booked(tenant: Tenant, label: str) -> CycleSettlement:
    with tenant_context(tenant):
        return CycleSettlement.objects.select_related("posting").get(cycle=label)


def test_a_settled_cycle_brings_both_cities_interop_accounts_to_zero(tenant, yrd_merchant):
    checks.route_cache_clear()
    jiaxing, hangzhou = tenant("jiaxing"), tenant("hangzhou")
    start = timezone.now().astimezone(SHANGHAI).replace(microsecond=0) - dt.timedelta(hours=2)
    jx_shop, hz_shop = (
        _shop(jiaxing, "jx-canteen", "330400", "MA0000001"),
        _shop(hangzhou, "hz-canteen", "330100", "MA0000002"),
    )
    _sell(jiaxing, jx_shop, _cards(hangzhou, range(900, 903)), [1250, 800, 1675], start)
    _sell(hangzhou, hz_shop, _cards(jiaxing, range(910, 912)), [2000, 555], start)
    assert _books(jiaxing)["interop:hangzhou"] == -3725  # receivable from Hangzhou's cards
    cycle = _run(yrd_merchant, start)
    positions = dict(cycle.positions.values_list("participant", "net_fen"))
    assert sum(positions.values()) == 0 and positions["yrd-operator"] > 0

    for city, other in ((jiaxing, "hangzhou"), (hangzhou, "jiaxing")):
        books = _books(city)
        # everything this cycle cleared is settled: nothing left between the cities
        assert books[f"interop:{other}"] == 0
        # the settlement bank account moved by the city's net position (money in is a debit)
        assert books[SETTLEMENT_BANK] == -positions[city.code]
        booked = _booked(city, cycle.label)
        assert booked.settled_fen == booked.file_net_fen == positions[city.code]
        assert (booked.records, booked.differences, booked.participant) == (5, 0, city.code)
        with tenant_context(city):
            legs = dict(booked.posting.legs.values_list("account__code", "amount_fen"))
            assert legs == {f"interop:{other}": positions[city.code], SETTLEMENT_BANK: -positions[city.code]}
            assert booked.posting.idempotency_key == f"interop-settle:{cycle.label}"
            assert (
                AuditEntry.objects.filter(action="settlement.cycle_book", object_id=cycle.label).count() == 1
            )
    # Σ over the tenants' settlement accounts and the operator's fees: the network's positions sum to zero
    assert (
        _booked(jiaxing, cycle.label).settled_fen + _booked(hangzhou, cycle.label).settled_fen
        == -positions["yrd-operator"]
    )

    # Delivered again, rerun by a clerk: nothing is booked twice.
    with tenant_context(jiaxing):
        manifest = InboxMessage.objects.get(kind="clearing.reconciliation").body
        postings = Posting.objects.count()
    message_deliver(
        tenant_code="jiaxing",
        kind="clearing.reconciliation",
        message_id=f"rcn-{cycle.label}-jiaxing",
        body=manifest,
        now=timezone.now(),
    )
    out = io.StringIO()
    call_command("settlement", "book", "--tenant", "jiaxing", stdout=out)
    assert cycle.label in out.getvalue()
    with tenant_context(jiaxing):
        assert [s.pk for s in settlement.cycle_settlements_book(actor="clerk")] == [
            _booked(jiaxing, cycle.label).pk
        ]
        assert Posting.objects.count() == postings
        assert AuditEntry.objects.filter(action="settlement.cycle_book").count() == 1
    assert _books(jiaxing)[SETTLEMENT_BANK] == -positions["jiaxing"]

    # A later cycle's purchases stay on the interop accounts until that cycle settles.
    later = timezone.now().astimezone(SHANGHAI).replace(microsecond=0) - dt.timedelta(minutes=30)
    _sell(jiaxing, jx_shop, _cards(hangzhou, range(903, 905)), [300, 450], later)
    assert _books(jiaxing)["interop:hangzhou"] == -750
    with tenant_context(hangzhou):
        assert LedgerAccount.objects.get(code="interop:jiaxing").balance_fen == 0  # not validated yet
    next_cycle = ClearingRecord.objects.filter(card_no=card_number("330100", 903)).get().cycle
    assert next_cycle.pk != cycle.pk
    next_cycle = cycle_run(cycle=next_cycle, now=next_cycle.cut_off_at + dt.timedelta(minutes=1))
    more = dict(next_cycle.positions.values_list("participant", "net_fen"))
    for city, other in ((jiaxing, "hangzhou"), (hangzhou, "jiaxing")):
        books = _books(city)
        assert books[f"interop:{other}"] == 0
        assert books[SETTLEMENT_BANK] == -(positions[city.code] + more[city.code])


def test_what_the_file_and_the_ledger_disagree_on_is_a_difference_for_a_clerk(
    tenant, yrd_merchant, send, collect
):
    checks.route_cache_clear()
    jiaxing, hangzhou = tenant("jiaxing"), tenant("hangzhou")
    start = timezone.now().astimezone(SHANGHAI).replace(microsecond=0) - dt.timedelta(hours=2)
    shop = _shop(jiaxing, "jx-shop", "330400", "MA0000003")
    known = _cards(hangzhou, range(920, 922))
    unknown = _cards(hangzhou, range(929, 930), known=False)  # Hangzhou rejects it: card_unknown
    _sell(jiaxing, shop, [*known, *unknown], [1000, 700, 400], start)
    # A merchant record in Jiaxing's outbox that Jiaxing's ledger never booked (no purchase behind it):
    # Hangzhou validates and books it, the cycle settles it, Jiaxing's books do not hold it.
    stray = record(
        acquirer="jiaxing", issuer="hangzhou", issuer_division="330100", serial=925, amount=900, when=start
    )
    stray.update(service="merchant", route="jx-shop")
    other = record(
        acquirer="jiaxing", issuer="hangzhou", issuer_division="330100", serial=926, amount=300, when=start
    )
    other.update(service="merchant", route="jx-shop")
    send("jiaxing", [stray, other], now=timezone.now())
    collect("jiaxing", now=timezone.now())
    cycle = _run(yrd_merchant, start)
    positions = dict(cycle.positions.values_list("participant", "net_fen"))

    booked = _booked(jiaxing, cycle.label)
    stray_id = f"jiaxing-{stray['source_tx_id']}"
    with tenant_context(jiaxing):
        differences = {d.record_id: d for d in SettlementDifference.objects.all()}
    # The purchase Hangzhou rejected (card unknown) was reversed from the file before the settlement was
    # booked (拒付冲正, merchants' rejections): no difference; the stray record Jiaxing's books never held is.
    other_id = f"jiaxing-{other['source_tx_id']}"
    assert {d.reason for d in differences.values()} == {"not_booked"} and set(differences) == {
        stray_id,
        other_id,
    }
    assert (differences[stray_id].file_fen, differences[stray_id].ledger_fen) == (-900, 0)
    # Jiaxing settled what its ledger holds; the stray records' share of the net position is the difference
    strays = ClearingRecord.objects.filter(record_id__in=[stray_id, other_id])
    stray_due = sum(r.amount_fen - r.issuer_fee_fen - r.network_fee_fen for r in strays)
    assert booked.file_net_fen == positions["jiaxing"]
    assert booked.settled_fen == positions["jiaxing"] - stray_due
    assert booked.differences == 2
    books = _books(jiaxing)
    assert books["interop:hangzhou"] == 0  # the rejected purchase reversed, the rest settled
    assert books[SETTLEMENT_BANK] == -booked.settled_fen
    # Hangzhou booked all it validated: no difference, settled to zero
    assert _booked(hangzhou, cycle.label).differences == 0
    assert _books(hangzhou)["interop:jiaxing"] == 0
    assert _booked(hangzhou, cycle.label).settled_fen == positions["hangzhou"]

    # The clerk sees them: the admin (the cycle's booking with its posting, the differences), the command.
    clerk = Client()
    clerk.force_login(
        user_create(
            username="jx-clerk-s", role="city_admin", tenant_code="jiaxing", password="a-long-password-1"
        )
    )
    page = clerk.get("/admin/settlement/cyclesettlement/", **JX).content.decode()
    assert cycle.label in page and f"/admin/accounts/posting/{booked.posting_id}/change/" in page
    page = clerk.get("/admin/settlement/settlementdifference/", **JX).content.decode()
    assert stray_id in page and other_id in page
    out = io.StringIO()
    call_command("settlement", "differences", "--open", "--tenant", "jiaxing", stdout=out)
    assert stray_id in out.getvalue() and "(not_booked)" in out.getvalue()
    call_command(
        "settlement",
        "resolve",
        str(differences[stray_id].pk),
        "--note",
        "paid by hand",
        "--tenant",
        "jiaxing",
        stdout=out,
    )
    clerk.post(
        "/admin/settlement/settlementdifference/",
        {"action": "resolve", "_selected_action": [differences[other_id].pk]},
        **JX,
    )
    with tenant_context(jiaxing):
        assert not SettlementDifference.objects.filter(resolved_at__isnull=True).exists()
        assert SettlementDifference.objects.get(record_id=stray_id).note == "paid by hand"
        assert SettlementDifference.objects.get(record_id=other_id).resolved_by == "jx-clerk-s"


def test_a_countys_merchants_settle_on_the_countys_ledger(tenant, yrd_merchant):
    """Tonglu clears through Hangzhou: its canteen's purchases are in Hangzhou's file, and Tonglu books its
    own rows of it — the receivable, the fees and the settlement — while Hangzhou books only its own."""
    checks.route_cache_clear()
    jiaxing, hangzhou, tonglu = tenant("jiaxing"), tenant("hangzhou"), tenant("tonglu")
    start = timezone.now().astimezone(SHANGHAI).replace(microsecond=0) - dt.timedelta(hours=2)
    _sell(
        tonglu,
        _shop(tonglu, "tl-canteen", "330122", "MA0000004"),
        _cards(jiaxing, range(930, 932)),
        [1500, 990],
        start,
    )
    _sell(
        hangzhou,
        _shop(hangzhou, "hz-shop", "330100", "MA0000005"),
        _cards(jiaxing, range(935, 936)),
        [620],
        start,
    )
    cycle = _run(yrd_merchant, start)
    positions = dict(cycle.positions.values_list("participant", "net_fen"))
    assert "tonglu" not in positions  # the county clears as its city

    county, city = _booked(tonglu, cycle.label), _booked(hangzhou, cycle.label)
    assert county.participant == city.participant == "hangzhou"
    assert (county.records, city.records) == (2, 1)
    # the county's share and the city's make the city's net position
    assert county.settled_fen + city.settled_fen == positions["hangzhou"]
    rows = {r.record_id: r for r in ClearingRecord.objects.filter(cycle=cycle)}
    county_rows = [r for r in rows.values() if r.record_id.startswith("tonglu-")]
    assert county.settled_fen == sum(r.amount_fen - r.issuer_fee_fen - r.network_fee_fen for r in county_rows)
    assert county.fees_fen == -sum(r.issuer_fee_fen + r.network_fee_fen for r in county_rows)
    with tenant_context(tonglu):
        fees = Posting.objects.get(idempotency_key=f"interop-fees:{cycle.label}")
        assert (
            dict(fees.legs.values_list("account__code", "amount_fen"))["fee-expense:interchange"]
            == county.fees_fen
        )
    for books in (_books(tonglu), _books(hangzhou)):
        assert books["interop:jiaxing"] == 0
    assert _books(tonglu)[SETTLEMENT_BANK] == -county.settled_fen
    assert _books(hangzhou)[SETTLEMENT_BANK] == -city.settled_fen
    # the issuer pays the city for both; its payable is settled to zero
    assert _books(jiaxing)["interop:hangzhou"] == 0
    assert _booked(jiaxing, cycle.label).settled_fen == positions["jiaxing"]


def _row(
    record_id: str, role: str, amount: int, *, status: str = "valid", adjusts: str = ""
) -> dict[str, str]:
    return {
        "record_id": record_id,
        "kind": "adjustment" if adjusts else "tap",
        "role": role,
        "counterparty": "hangzhou",
        "amount_fen": str(amount),
        "issuer_fee_fen": "3",
        "network_fee_fen": "1",
        "status": status,
        "adjusts": adjusts,
    }


def test_which_rows_settle_and_which_are_differences():
    rows = [
        _row("jiaxing-1", "acquirer", 500),  # held as the file says: settled
        _row("jiaxing-2", "acquirer", 500),  # held with another amount: settled, and a difference
        _row("jiaxing-3", "acquirer", 500),  # not held: a difference in a merchant cycle
        _row("hangzhou-4", "issuer", 200),  # a transit ride not held and not expected (an e-purse tap)
        _row("hangzhou-5", "issuer", 200),  # a code ride accepted, not charged yet
        _row("adj-jiaxing-1", "acquirer", -500, adjusts="jiaxing-1"),  # a dispute's adjustment
        _row("jiaxing-6", "acquirer", 700, status="rejected"),  # rejected, still held
        _row("jiaxing-7", "acquirer", 700, status="rejected"),  # rejected, reversed
    ]
    held = {"jiaxing-1": -500, "jiaxing-2": -450, "jiaxing-6": -700}
    booked = {"jiaxing-1", "jiaxing-2", "jiaxing-6", "jiaxing-7"}
    merchant = settlement.rows_sort(
        rows[:3] + rows[5:], service="merchant", held=held, booked=booked, expected=set()
    )
    assert [r["record_id"] for r in merchant.settled] == ["jiaxing-1", "jiaxing-2"]
    assert [(r["record_id"], ledger, why) for r, ledger, why in merchant.differences] == [
        ("jiaxing-2", -450, "amount"),
        ("jiaxing-3", 0, "not_booked"),
        ("adj-jiaxing-1", 0, "adjustment"),
        ("jiaxing-6", -700, "rejected_booked"),
    ]
    transit = settlement.rows_sort(
        rows[3:5], service="transit", held={}, booked=set(), expected={"hangzhou-5"}
    )
    assert transit.settled == [] and [(r["record_id"], why) for r, _l, why in transit.differences] == [
        ("hangzhou-5", "not_booked")
    ]
    # whose rows: a city's file lists its county's purchases, which the county books, never the city
    assert settlement.record_origin(rows[5]) == "jiaxing"
    county_row = _row("tonglu-9", "acquirer", 100)
    assert not settlement.row_is_mine(county_row, code="hangzhou", participant="hangzhou")
    assert settlement.row_is_mine(county_row, code="tonglu", participant="hangzhou")
    assert not settlement.row_is_mine(_row("x-1", "issuer", 1), code="tonglu", participant="hangzhou")


def test_a_transit_file_costs_one_query_where_no_code_ride_was_taken(tenant):
    """A national transit cycle delivers 300 manifests inside its settlement step: a city whose cardholders
    took no citizen-code ride elsewhere holds nothing of it and reads nothing more than that."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with tenant_context(tenant("jiaxing")), CaptureQueriesContext(connection) as queries:
        settlement.cycle_settlement_on_delivery("rcn-x", {"cycle": "x", "service": "transit"}, timezone.now())
        settlement.cycle_settlement_on_delivery("rcn-y", {"cycle": "y", "service": "medical"}, timezone.now())
    assert [q["sql"] for q in queries if not q["sql"].startswith("SET ")] == [
        q["sql"] for q in queries if "credit_roamingfare" in q["sql"]
    ]
    assert len([q for q in queries if not q["sql"].startswith("SET ")]) == 1
