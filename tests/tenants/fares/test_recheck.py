"""fare_recheck: uploaded taps whose amount differs from the published rules are flagged, not refused."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import tenant_context

from citycard.tenants.fares import seeds
from citycard.tenants.terminals import checks
from citycard.tenants.terminals.ingest import batch_ingest
from citycard.tenants.terminals.models import ReviewFlag, Transaction
from citycard.tenants.terminals.services import terminal_register
from citycard.tenants.terminals.simulate import SimCard, SimTerminal, card_number
from citycard.terminal_kit.transit import TripCodec

from .conftest import SH

pytestmark = pytest.mark.django_db
AT = dt.datetime(2026, 11, 23, 10, 0, tzinfo=SH)  # a Monday, off-peak


@pytest.fixture(autouse=True)
def _fresh_route_cache():
    checks.route_cache_clear()
    yield
    checks.route_cache_clear()


@pytest.fixture
def hz(tenant, published):
    published("hangzhou", seeds.HANGZHOU)
    hangzhou = tenant("hangzhou")
    sim = SimTerminal("HZ-FARE-1", "hangzhou", route="155")
    with tenant_context(hangzhou):
        terminal_register(
            terminal_id=sim.terminal_id,
            operator="杭州公交",
            department="transport",
            service="bus",
            route=sim.route,
            public_key=sim.public_key,
            actor="test",
        )
    return hangzhou, sim


def tap(sim, card, at, amount, **facts):
    record = sim.tap(card, at=at, amount_fen=amount)
    record.update(card_scheme="01", **facts)
    return record


def upload(hangzhou, sim, taps, received=AT + dt.timedelta(hours=3)):
    body = sim.sign(sim.payload(taps, created_at=received))
    with tenant_context(hangzhou):
        return batch_ingest(tenant=hangzhou, body=body, received_at=received)


def flags(hangzhou):
    with tenant_context(hangzhou):
        return {
            Transaction.objects.get(pk=f.transaction_id).terminal_seq: f.detail
            for f in ReviewFlag.objects.filter(code="fare_mismatch")
        }


def test_mismatch_flagged_tap_accepted(hz):
    hangzhou, sim = hz
    a, b, e = (SimCard(card_number("330100", n)) for n in (1, 2, 3))
    result = upload(
        hangzhou,
        sim,
        [
            tap(sim, a, AT, 180),  # 91折: right
            tap(sim, b, AT, 200),  # should have been 180
            tap(sim, e, AT, 0, categories=["elderly"]),  # elderly off-peak: free, right
        ],
    )
    assert result.accepted == 3
    assert flags(hangzhou) == {
        2: {"expected_fen": 180, "charged_fen": 200, "rule": "hz-card-91", "rule_version": 1}
    }


def test_transfer_and_cap_replayed_across_batches(hz):
    hangzhou, sim = hz
    card = SimCard(card_number("330100", 7))
    upload(hangzhou, sim, [tap(sim, card, AT, 180)])
    # second batch: a transfer within 90 minutes of the tap in the first batch costs 80
    upload(hangzhou, sim, [tap(sim, card, AT + dt.timedelta(minutes=30), 80)])
    assert flags(hangzhou) == {}
    upload(hangzhou, sim, [tap(sim, card, AT + dt.timedelta(minutes=50), 80)])  # second transfer: 180
    assert flags(hangzhou) == {
        3: {"expected_fen": 180, "charged_fen": 80, "rule": "hz-card-91", "rule_version": 1}
    }


def test_the_journey_the_card_said_prices_the_tap_whichever_bus_took_the_earlier_rides(hz):
    hangzhou, sim = hz
    codec = TripCodec("hangzhou", quotas=["hz-elderly-free"], caps=["hz-day-cap"])
    minute = int(AT.timestamp()) // 60
    # The card says: a ride on bus 151 at 10:00 (another operator's bus, never uploaded here) ...
    came_off_151 = codec.encode({"j": {"t0": minute, "t": minute, "n": 0, "p": 180, "s": "bus", "r": "151"}})
    # ... and, for another card, 1500 fen already spent today on Hangzhou's buses and metro.
    capped = codec.encode({"c": {"hz-day-cap": [AT.date().toordinal(), 1500]}})
    later = AT + dt.timedelta(minutes=30)
    transfer = tap(sim, SimCard(card_number("330100", 11)), later, 80, card_trip=came_off_151.hex())
    free = tap(sim, SimCard(card_number("330100", 12)), later, 0, card_trip=capped.hex())
    unsaid = tap(sim, SimCard(card_number("330100", 13)), later, 80)  # no record: replayed, no ride before
    assert upload(hangzhou, sim, [transfer, free, unsaid]).accepted == 3
    assert flags(hangzhou) == {
        3: {"expected_fen": 180, "charged_fen": 80, "rule": "hz-card-91", "rule_version": 1}
    }
    with tenant_context(hangzhou):
        stored = Transaction.objects.get(terminal_id=sim.terminal_id, terminal_seq=1)
    assert stored.card_trip == came_off_151.hex()


def test_the_monthly_pass_fare_holds_only_for_a_card_that_carried_the_pass(hz):
    hangzhou, sim = hz
    upload(
        hangzhou,
        sim,
        [
            tap(sim, SimCard(card_number("330100", 8)), AT, 100, passes=["monthly"]),  # 50% with the pass
            tap(sim, SimCard(card_number("330100", 9)), AT, 100),  # the pass fare, but no pass on the card
        ],
    )
    assert flags(hangzhou) == {
        2: {"expected_fen": 180, "charged_fen": 100, "rule": "hz-card-91", "rule_version": 1}
    }
    with tenant_context(hangzhou):
        assert Transaction.objects.get(terminal_id=sim.terminal_id, terminal_seq=1).passes == ["monthly"]


def test_rules_not_yet_in_force_check_nothing(tenant, published):
    published("jiaxing", seeds.JIAXING, effective_from=AT + dt.timedelta(days=1))
    jiaxing = tenant("jiaxing")
    sim = SimTerminal("JX-FARE-1", "jiaxing", route="2")
    with tenant_context(jiaxing):
        terminal_register(
            terminal_id=sim.terminal_id,
            operator="嘉兴公交",
            department="transport",
            service="bus",
            route="2",
            public_key=sim.public_key,
            actor="test",
        )
    upload(jiaxing, sim, [tap(sim, SimCard(card_number("330400", 1)), AT, 999)])
    assert flags(jiaxing) == {}


def _queries(hangzhou, sim, n, start):
    taps = [
        tap(sim, SimCard(card_number("330100", 1000 + start + i)), AT + dt.timedelta(seconds=i), 200)
        for i in range(n)
    ]
    body = sim.sign(sim.payload(taps, created_at=AT + dt.timedelta(hours=3)))
    with tenant_context(hangzhou), CaptureQueriesContext(connection) as queries:
        result = batch_ingest(tenant=hangzhou, body=body, received_at=AT + dt.timedelta(hours=3))
    assert result.accepted == n
    return [q["sql"] for q in queries.captured_queries]


def test_recheck_keeps_the_query_count_flat(hz):
    hangzhou, sim = hz
    _queries(hangzhou, sim, 2, 0)  # warms the route cache and compiles the document
    small = _queries(hangzhou, sim, 5, 10)
    large = _queries(hangzhou, sim, 400, 100)
    # the 12 of the terminals' inline pin (no rules published) + the earlier taps of the batch's cards
    # (the flags are stored by the upload's last-writes round trip, which runs anyway)
    assert len(small) == len(large) == 13, [q[:70] for q in large]
    assert len(flags(hangzhou)) == 2 + 5 + 400  # 200 fen where the card pays 180
