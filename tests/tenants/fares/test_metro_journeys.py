"""Metro journeys in the back office: entry and exit taps uploaded by the gates, paired into one journey at
ingestion whichever batch arrives first (and only once however often a batch is resent), re-priced by
fare_recheck as the gates priced them (entry -> exit from the card's record), for local and roaming cards."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
from django_tenants.utils import tenant_context

from citycard.tenants.exchange.models import OutboxMessage
from citycard.tenants.fares import seeds
from citycard.tenants.terminals import checks
from citycard.tenants.terminals.ingest import batch_ingest
from citycard.tenants.terminals.models import Journey, ReviewFlag, Transaction
from citycard.tenants.terminals.services import terminal_register
from citycard.tenants.terminals.simulate import SimCard, SimTerminal, card_number
from citycard.terminal_kit.card.virtual import EMPTY_TRANSIT
from citycard.terminal_kit.fares import Card, FareEngine, Trip
from citycard.terminal_kit.transit import TripCodec

from .conftest import SH

pytestmark = pytest.mark.django_db
AT = dt.datetime(2026, 11, 23, 10, 0, tzinfo=SH)


def metro_body() -> dict:
    body = copy.deepcopy(seeds.HANGZHOU)
    metro = copy.deepcopy(seeds.HANGZHOU_METRO)
    body["fare_products"] += metro.pop("fare_products")
    body.update(metro)
    return body


@pytest.fixture(autouse=True)
def _fresh_route_cache():
    checks.route_cache_clear()
    yield
    checks.route_cache_clear()


@pytest.fixture
def gates(tenant, published):
    publication = published("hangzhou", metro_body())
    hangzhou = tenant("hangzhou")
    sims = {}
    for name, gate, station, no in (
        ("HZ-GATE-IN", "entry", "hz-1-01", "330100000011"),
        ("HZ-GATE-OUT", "exit", "hz-1-06", "330100000012"),
    ):
        sim = SimTerminal(name, "hangzhou", service="metro", route="1", terminal_no=no)
        with tenant_context(hangzhou):
            terminal_register(
                terminal_id=name,
                operator="杭州地铁",
                department="transport",
                service="metro",
                route="1",
                location=station,
                gate=gate,
                public_key=sim.public_key,
                actor="test",
            )
        sims[gate] = sim
    engine = FareEngine.from_payload(publication.document["payload"])
    return hangzhou, sims, engine


def ride(sims, engine, card: SimCard, *, exit_fen: int | None = None, minutes: int = 20):
    """The two taps a gate pair uploads for one journey hz-1-01 -> hz-1-06, priced as the gates price."""
    codec = TripCodec.for_fare(engine)
    facts = Card(issuer=card.issuer)
    entry = engine.entry(facts, Trip("metro", "1", AT, origin="hz-1-01"), {}, terminal="330100000011")
    leave_at = AT + dt.timedelta(minutes=minutes)
    exit_quote = engine.exit(facts, Trip("metro", "1", leave_at, destination="hz-1-06"), entry.state)
    tap_in = sims["entry"].tap(card, at=AT, amount_fen=0)
    tap_in["card_trip"] = EMPTY_TRANSIT.hex()
    amount = exit_quote.fare_fen if exit_fen is None else exit_fen
    tap_out = sims["exit"].tap(card, at=leave_at, amount_fen=amount)
    tap_out["card_trip"] = codec.encode(entry.state).hex()
    return tap_in, tap_out, exit_quote


def upload(hangzhou, sim, taps):
    received = AT + dt.timedelta(hours=3)
    body = sim.sign(sim.payload(taps, created_at=received))
    with tenant_context(hangzhou):
        return batch_ingest(tenant=hangzhou, body=body, received_at=received)


def test_exit_before_entry_pairs_into_one_journey_once_and_prices_as_the_gates(gates):
    hangzhou, sims, engine = gates
    local, roaming = SimCard(card_number("330100", 1)), SimCard(card_number("310000", 2))
    in_local, out_local, quote_local = ride(sims, engine, local)
    in_roam, out_roam, quote_roam = ride(sims, engine, roaming)
    assert (quote_local.fare_fen, quote_roam.fare_fen) == (360, 360)  # 9.4 km, 90% with the card (YRD)
    upload(hangzhou, sims["exit"], [out_local, out_roam])  # the exits arrive first
    with tenant_context(hangzhou):
        assert sorted(Journey.objects.values_list("status", flat=True)) == ["exit_only", "exit_only"]
        # the entry as the exit read it from the card: the minute it was made, in Beijing time
        assert set(Journey.objects.values_list("entered_at", flat=True)) == {AT}
    upload(hangzhou, sims["entry"], [in_local, in_roam])
    upload(hangzhou, sims["entry"], [in_local, in_roam])  # resent: duplicates, nothing paired twice
    with tenant_context(hangzhou):
        journeys = {j.card_no: j for j in Journey.objects.all()}
        assert len(journeys) == 2
        for card in (local, roaming):
            j = journeys[card.card_no]
            assert (j.status, j.origin, j.destination, j.line) == ("complete", "hz-1-01", "hz-1-06", "1")
            assert (j.entry_fen, j.exit_fen, j.fare_fen) == (0, 360, 360)
            assert j.entry_tx_id == Transaction.objects.get(card_no=card.card_no, terminal_id="HZ-GATE-IN").pk
            assert j.exit_tx_id == Transaction.objects.get(card_no=card.card_no, terminal_id="HZ-GATE-OUT").pk
            assert j.entered_at == AT and j.exited_at == AT + dt.timedelta(minutes=20)
        assert journeys[roaming.card_no].routing == "roaming" and journeys[local.card_no].routing == "own"
        assert not ReviewFlag.objects.filter(code="fare_mismatch").exists()
        # the roaming card's entry and exit go to its issuer as one journey: same key, origin to destination
        records = [
            r
            for m in OutboxMessage.objects.filter(kind="clearing.records")
            for r in m.envelope["payload"]["body"]["records"]
        ]
        assert {r["card_no"] for r in records} == {roaming.card_no}
        by_role = {r["journey"]["role"]: r for r in records}
        key = journeys[roaming.card_no].key
        assert by_role["exit"]["journey"] == {
            "key": key,
            "origin": "hz-1-01",
            "destination": "hz-1-06",
            "line": "1",
            "role": "exit",
        }
        assert (
            by_role["entry"]["journey"]["key"] == key and by_role["entry"]["journey"]["origin"] == "hz-1-01"
        )
        assert (by_role["entry"]["amount_fen"], by_role["exit"]["amount_fen"]) == (0, 360)


def test_a_wrong_exit_fare_is_flagged_with_the_entry_to_exit_fare(gates):
    hangzhou, sims, engine = gates
    card = SimCard(card_number("330100", 3))
    tap_in, tap_out, _ = ride(sims, engine, card, exit_fen=200)
    upload(hangzhou, sims["entry"], [tap_in])
    upload(hangzhou, sims["exit"], [tap_out])
    with tenant_context(hangzhou):
        (flag,) = ReviewFlag.objects.filter(code="fare_mismatch")
        assert flag.detail["expected_fen"] == 360 and flag.detail["charged_fen"] == 200
        assert flag.detail["rule"] == "hz-metro-card"


def test_an_exit_without_an_entry_is_a_journey_of_its_own_at_the_penalty(gates):
    hangzhou, sims, _engine = gates
    card = SimCard(card_number("330100", 4))
    tap_out = sims["exit"].tap(card, at=AT, amount_fen=900)
    tap_out["card_trip"] = EMPTY_TRANSIT.hex()
    upload(hangzhou, sims["exit"], [tap_out])
    with tenant_context(hangzhou):
        (j,) = Journey.objects.all()
        assert (j.status, j.origin, j.destination, j.exit_fen) == ("no_entry", "", "hz-1-06", 900)
        assert not ReviewFlag.objects.filter(code="fare_mismatch").exists()


def test_the_partner_api_shows_a_gate_taps_journey_origin_to_destination(client, gates):
    from citycard.platform.scopes import Scope
    from tests.graphql.conftest import data_of, gql, issue

    hangzhou, sims, engine = gates
    card = SimCard(card_number("310000", 5))  # a roaming Shanghai card
    tap_in, tap_out, _ = ride(sims, engine, card)
    upload(hangzhou, sims["exit"], [tap_out])
    upload(hangzhou, sims["entry"], [tap_in])
    token = issue("hangzhou", [Scope.TRANSACTIONS_READ])
    query = """query($n: String!) { transactions(first: 10, filter: {cardNumber: $n}) { edges { node {
        amountFen terminal { gate location }
        journey { origin destination line fareFen entryFen exitFen status enteredAt exitedAt } } } } }"""
    edges = data_of(gql(client, "hangzhou", query, {"n": card.card_no}, token=token))["transactions"]["edges"]
    nodes = sorted((e["node"] for e in edges), key=lambda n: n["amountFen"])
    journey = {
        "origin": "hz-1-01",
        "destination": "hz-1-06",
        "line": "1",
        "fareFen": 360,
        "entryFen": 0,
        "exitFen": 360,
        "status": "COMPLETE",
        "enteredAt": "2026-11-23T02:00:00+00:00",
        "exitedAt": "2026-11-23T02:20:00+00:00",
    }
    assert nodes == [
        {"amountFen": 0, "terminal": {"gate": "entry", "location": "hz-1-01"}, "journey": journey},
        {"amountFen": 360, "terminal": {"gate": "exit", "location": "hz-1-06"}, "journey": journey},
    ]
