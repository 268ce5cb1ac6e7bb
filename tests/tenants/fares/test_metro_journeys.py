"""Metro journeys in the back office: entry and exit taps uploaded by the gates, paired into one journey at
ingestion whichever batch arrives first (and only once however often a batch is resent), re-priced by
fare_recheck as the gates priced them (entry -> exit from the card's record), for local and roaming cards;
half journeys (半程行程: an entry whose exit never comes, an exit whose entry never comes or went to another
schema) released to clearing alone after the time-out with what the tap took, a late other half alone too."""

from __future__ import annotations

import copy
import datetime as dt
import io
import json

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import translation
from django_tenants.utils import tenant_context

from citycard.interop.models import ClearingRecord, Journal
from citycard.interop.selectors import cycle_summary
from citycard.interop.services.agreements import agreement_set
from citycard.interop.services.cycles import (
    cycle_close,
    cycle_get_or_create,
    cycle_net,
    cycle_settle,
    cycle_validate,
)
from citycard.interop.services.messages import outbox_collect
from citycard.platform.audit.models import AuditEntry
from citycard.platform.keys import tenant_card_tac_master
from citycard.platform.models import Role
from citycard.platform.services import user_create
from citycard.tenants.exchange.models import OutboxMessage, SeenCounter
from citycard.tenants.fares import seeds
from citycard.tenants.terminals import checks
from citycard.tenants.terminals.ingest import batch_ingest
from citycard.tenants.terminals.journeys import half_release_minutes
from citycard.tenants.terminals.models import Journey, ReviewFlag, Transaction
from citycard.tenants.terminals.services import half_journeys_release, terminal_register
from citycard.tenants.terminals.simulate import SimCard, SimTerminal, card_number
from citycard.tenants.terminals.tasks import half_journeys_release_all
from citycard.terminal_kit.card.virtual import EMPTY_TRANSIT
from citycard.terminal_kit.fares import Card, FareEngine, Trip
from citycard.terminal_kit.money import yuan
from citycard.terminal_kit.transit import TripCodec
from tests.interop.conftest import cards_known

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
        # the roaming card's entry and exit go to its issuer as ONE journey record, origin to destination
        (record,) = outbox_records()
        j = journeys[roaming.card_no]
        assert record["card_no"] == roaming.card_no and record["record_id"] == f"hangzhou-{j.exit_tx_id}"
        assert record["amount_fen"] == 360 and record["source_tx_id"] == j.exit_tx_id
        assert record["journey"] == {
            "key": j.key,
            "status": "complete",
            "origin": "hz-1-01",
            "destination": "hz-1-06",
            "line": "1",
            "entered_at": "2026-11-23T10:00:00+08:00",
            "exited_at": "2026-11-23T10:20:00+08:00",
        }
        assert [(t["role"], t["source_tx_id"], t["amount_fen"]) for t in record["taps"]] == [
            ("entry", j.entry_tx_id, 0),
            ("exit", j.exit_tx_id, 360),
        ]


def outbox_records() -> list[dict]:
    return [
        r
        for m in OutboxMessage.objects.filter(kind="clearing.records").order_by("id")
        for r in m.envelope["payload"]["body"]["records"]
    ]


def test_a_roaming_journey_clears_as_one_record_validated_and_netted_whichever_tap_comes_first(gates, tenant):
    hangzhou, sims, engine = gates
    shanghai = tenant("shanghai")
    for sim in sims.values():  # the gates' TACs are the cards' (the issuer checks each tap's)
        sim.tac_masters["310000"] = tenant_card_tac_master(tenant=shanghai)
    first, second = SimCard(card_number("310000", 6)), SimCard(card_number("310000", 7))
    in_1, out_1, quote = ride(sims, engine, first)
    in_2, out_2, _ = ride(sims, engine, second)
    upload(hangzhou, sims["exit"], [out_1])  # the first card's exit arrives before its entry
    with tenant_context(hangzhou):
        assert outbox_records() == []  # held: the journey is not whole yet
    upload(hangzhou, sims["entry"], [in_1, in_2])  # completes the first; the second's entry is held
    upload(hangzhou, sims["entry"], [in_1, in_2])  # resent: nothing new
    upload(hangzhou, sims["exit"], [out_2])  # completes the second
    with tenant_context(hangzhou):
        records = outbox_records()
        exits = dict(Transaction.objects.filter(terminal_id="HZ-GATE-OUT").values_list("card_no", "id"))
    assert [(r["card_no"], r["record_id"], r["amount_fen"]) for r in records] == [
        (first.card_no, f"hangzhou-{exits[first.card_no]}", quote.fare_fen),
        (second.card_no, f"hangzhou-{exits[second.card_no]}", quote.fare_fen),
    ]
    # the host's outbox collected, the issuer validates each journey (both taps' TACs and counters) and
    # the cycle nets two journeys: Shanghai owes Hangzhou their fares less the fees
    agreement_set(
        network_code="yrd",
        service="transit",
        valid_from=dt.date(2020, 1, 1),
        issuer_fee_bps=0,
        network_fee_bps=0,
        cut_off=dt.time(4, 0),
        dispute_window_days=30,
        actor="test",
    )
    cards_known(shanghai, [first.card_no, second.card_no])
    assert outbox_collect(tenant=hangzhou)["collected"] == 2  # one message per hand-off that completed one
    assert outbox_collect(tenant=hangzhou)["collected"] == 0
    cycle = cycle_get_or_create(network_code="yrd", service="transit", business_date=AT.date())
    later = AT + dt.timedelta(days=1)
    cycle_close(cycle=cycle, now=later)
    cycle_validate(cycle=cycle, now=later)
    cycle_net(cycle=cycle, now=later)
    summary = cycle_summary(cycle=cycle)["records"]
    assert summary == {"valid": {"records": 2, "amount_fen": 2 * quote.fare_fen}}
    positions = dict(cycle.positions.values_list("participant", "net_fen"))
    assert positions == {"hangzhou": 2 * quote.fare_fen, "shanghai": -2 * quote.fare_fen}


def test_a_journey_whose_entry_tac_is_forged_is_rejected_by_the_issuer(gates, tenant):
    hangzhou, sims, engine = gates
    shanghai = tenant("shanghai")
    sims["exit"].tac_masters["310000"] = tenant_card_tac_master(tenant=shanghai)  # the entry's TAC is random
    card = SimCard(card_number("310000", 8))
    tap_in, tap_out, _ = ride(sims, engine, card)
    upload(hangzhou, sims["entry"], [tap_in])
    upload(hangzhou, sims["exit"], [tap_out])
    with tenant_context(hangzhou):
        (record,) = outbox_records()
    agreement_set(
        network_code="yrd",
        service="transit",
        valid_from=dt.date(2020, 1, 1),
        issuer_fee_bps=0,
        network_fee_bps=0,
        cut_off=dt.time(4, 0),
        dispute_window_days=30,
        actor="test",
    )
    cards_known(shanghai, [card.card_no])
    outbox_collect(tenant=hangzhou)
    cycle = cycle_get_or_create(network_code="yrd", service="transit", business_date=AT.date())
    later = AT + dt.timedelta(days=1)
    cycle_close(cycle=cycle, now=later)
    cycle_validate(cycle=cycle, now=later)
    (found,) = ClearingRecord.objects.filter(cycle=cycle).with_status()
    assert (found.record_id, found.current_status, found.reason) == (
        record["record_id"],
        "rejected",
        "tac_invalid",
    )


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
        journey { origin destination line fareFen entryFen exitFen status enteredAt exitedAt
                  released releasedAt releasedTransactionId } } } } }"""
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
        # made whole before its time-out: never released
        "released": False,
        "releasedAt": None,
        "releasedTransactionId": None,
    }
    assert nodes == [
        {"amountFen": 0, "terminal": {"gate": "entry", "location": "hz-1-01"}, "journey": journey},
        {"amountFen": 360, "terminal": {"gate": "exit", "location": "hz-1-06"}, "journey": journey},
    ]


def test_an_exit_after_another_citys_gate_entry_is_a_no_entry_journey_cleared_at_the_penalty(gates):
    hangzhou, sims, _engine = gates
    card = SimCard(card_number("310000", 9))  # a roaming card that entered at a Shenzhen gate
    foreign = TripCodec("shenzhen", stations=["sz-1-01"])
    entry = {"s": "sz-1-01", "l": "1", "t": int(AT.timestamp()) // 60, "tm": "440300000011", "d": 0}
    tap_out = sims["exit"].tap(card, at=AT + dt.timedelta(minutes=30), amount_fen=900)
    tap_out["card_trip"] = foreign.encode({"e": entry}).hex()
    upload(hangzhou, sims["exit"], [tap_out])
    with tenant_context(hangzhou):
        (j,) = Journey.objects.all()
        assert (j.status, j.origin, j.destination, j.exit_fen) == ("no_entry", "", "hz-1-06", 900)
        assert not ReviewFlag.objects.filter(code="fare_mismatch").exists()  # priced as the gate did
        (record,) = outbox_records()
        assert record["amount_fen"] == 900 and record["journey"]["status"] == "no_entry"
        assert [t["role"] for t in record["taps"]] == ["exit"]


# --- half journeys ----------------------------------------------------------------------------------

TIME_OUT = dt.timedelta(minutes=240 + 120)  # the gate rules' time limit + the upload grace


def release(hangzhou, *, at: dt.datetime) -> int:
    with tenant_context(hangzhou):
        return half_journeys_release(actor="test", now=at)


def records_of(hangzhou) -> list[tuple[str, int, str | None, list[str]]]:
    with tenant_context(hangzhou):
        return [
            (r["record_id"], r["amount_fen"], r["journey"].get("half"), [t["role"] for t in r["taps"]])
            for r in outbox_records()
        ]


def tx_ids(hangzhou, card) -> dict[str, int]:
    with tenant_context(hangzhou):
        rows = Transaction.objects.filter(card_no=card.card_no).values_list("terminal_id", "id")
        return {"entry" if t == "HZ-GATE-IN" else "exit": i for t, i in rows}


def deposit_ride(sims, engine, card):
    """A journey hz-1-01 -> hz-1-06 whose entry took a deposit (200) and whose exit the rest (160)."""
    codec = TripCodec.for_fare(engine)
    entry = engine.entry(
        Card(issuer=card.issuer), Trip("metro", "1", AT, origin="hz-1-01"), {}, terminal="330100000011"
    )
    tap_in = sims["entry"].tap(card, at=AT, amount_fen=200)
    tap_in["card_trip"] = EMPTY_TRANSIT.hex()
    tap_out = sims["exit"].tap(card, at=AT + dt.timedelta(minutes=20), amount_fen=160)
    tap_out["card_trip"] = codec.encode(entry.state).hex()
    return tap_in, tap_out


def test_the_time_out_is_the_gate_rules_time_limit_plus_the_grace(gates, settings):
    hangzhou, _sims, _engine = gates
    with tenant_context(hangzhou):
        assert half_release_minutes(tenant=hangzhou, at=AT) == 240 + 120
        settings.HALF_JOURNEY_GRACE_MINUTES = 30
        assert half_release_minutes(tenant=hangzhou, at=AT) == 270
        settings.HALF_JOURNEY_RELEASE_MINUTES = 90
        assert half_release_minutes(tenant=hangzhou, at=AT) == 90


def test_an_entry_that_took_a_deposit_and_never_exits_clears_alone_once_and_a_late_exit_alone(gates):
    hangzhou, sims, engine = gates
    card = SimCard(card_number("310000", 21))
    tap_in, tap_out = deposit_ride(sims, engine, card)
    free = SimCard(card_number("310000", 22))  # an entry that took nothing
    tap_in_2, tap_out_2, quote = ride(sims, engine, free)
    upload(hangzhou, sims["entry"], [tap_in, tap_in_2])
    assert records_of(hangzhou) == []  # held: not whole
    assert release(hangzhou, at=AT + TIME_OUT - dt.timedelta(minutes=1)) == 0  # not yet
    assert release(hangzhou, at=AT + TIME_OUT) == 2
    ids, free_ids = tx_ids(hangzhou, card), tx_ids(hangzhou, free)
    # the deposit clears as the entry's own record; the entry that took nothing as a zero-amount record
    assert records_of(hangzhou) == [
        (f"hangzhou-{ids['entry']}", 200, "released", ["entry"]),
        (f"hangzhou-{free_ids['entry']}", 0, "released", ["entry"]),
    ]
    assert release(hangzhou, at=AT + 2 * TIME_OUT) == 0  # a release never repeats
    with tenant_context(hangzhou):
        j = Journey.objects.get(card_no=card.card_no)
        assert (j.status, j.released_tx_id) == ("open", ids["entry"])
    upload(hangzhou, sims["exit"], [tap_out])  # the exit, late: it clears alone with what it took
    upload(hangzhou, sims["exit"], [tap_out])  # resent: nothing new
    ids = tx_ids(hangzhou, card)
    assert records_of(hangzhou)[::2] == [
        (f"hangzhou-{ids['entry']}", 200, "released", ["entry"]),
        (f"hangzhou-{ids['exit']}", 160, "late", ["exit"]),
    ]
    with tenant_context(hangzhou):
        assert Journey.objects.get(card_no=card.card_no).status == "complete"
    upload(hangzhou, sims["exit"], [tap_out_2])  # the free entry's exit, late: alone, the whole fare
    free_ids = tx_ids(hangzhou, free)
    assert records_of(hangzhou)[3:] == [(f"hangzhou-{free_ids['exit']}", quote.fare_fen, "late", ["exit"])]


def test_the_partner_api_shows_a_half_journeys_release_and_the_tap_it_cleared(client, gates):
    """A roaming card's entry never followed by an exit: released after the time-out, the journey reads
    released, when, and which tap (the entry, by its Transaction id) cleared alone; the late exit pairs it
    (COMPLETE) and it stays released."""
    from citycard.graphql.core.types import global_id
    from citycard.platform.scopes import Scope
    from tests.graphql.conftest import data_of, gql, issue

    hangzhou, sims, engine = gates
    card = SimCard(card_number("310000", 24))
    tap_in, tap_out = deposit_ride(sims, engine, card)
    upload(hangzhou, sims["entry"], [tap_in])
    token = issue("hangzhou", [Scope.TRANSACTIONS_READ])
    query = """query($n: String!) { transactions(first: 10, filter: {cardNumber: $n}) { edges { node {
        id amountFen journey { status entryFen released releasedAt releasedTransactionId } } } } }"""

    def nodes():
        edges = data_of(gql(client, "hangzhou", query, {"n": card.card_no}, token=token))["transactions"]
        return sorted((e["node"] for e in edges["edges"]), key=lambda n: n["amountFen"])

    (entry,) = nodes()
    assert entry["journey"] == {
        "status": "OPEN",
        "entryFen": 200,
        "released": False,
        "releasedAt": None,
        "releasedTransactionId": None,
    }
    assert release(hangzhou, at=AT + TIME_OUT) == 1
    released = {
        "released": True,
        "releasedAt": (AT + TIME_OUT).astimezone(dt.UTC).isoformat(),
        "releasedTransactionId": global_id("Transaction", tx_ids(hangzhou, card)["entry"]),
    }
    (entry,) = nodes()
    assert entry["journey"] == {"status": "OPEN", "entryFen": 200, **released}
    assert entry["journey"]["releasedTransactionId"] == entry["id"]  # the entry tap is the one cleared
    upload(hangzhou, sims["exit"], [tap_out])  # late: paired, and still released
    assert [n["journey"] for n in nodes()] == [{"status": "COMPLETE", "entryFen": 200, **released}] * 2


def test_an_exit_whose_entry_never_arrives_clears_alone_with_the_cards_entry_and_a_late_entry_alone(gates):
    hangzhou, sims, engine = gates
    card = SimCard(card_number("310000", 23))
    tap_in, tap_out = deposit_ride(sims, engine, card)
    upload(hangzhou, sims["exit"], [tap_out])
    exit_at = AT + dt.timedelta(minutes=20)
    assert release(hangzhou, at=exit_at + TIME_OUT - dt.timedelta(minutes=1)) == 0
    assert release(hangzhou, at=exit_at + TIME_OUT) == 1
    ids = tx_ids(hangzhou, card)
    with tenant_context(hangzhou):
        (record,) = outbox_records()
    assert (record["record_id"], record["amount_fen"]) == (f"hangzhou-{ids['exit']}", 160)
    assert {k: record["journey"][k] for k in ("status", "half", "origin", "destination", "entered_at")} == {
        "status": "exit_only",
        "half": "released",
        "origin": "hz-1-01",  # what the card's entry record said
        "destination": "hz-1-06",
        "entered_at": "2026-11-23T10:00:00+08:00",
    }
    upload(hangzhou, sims["entry"], [tap_in])  # the entry, late: its deposit clears alone
    ids = tx_ids(hangzhou, card)
    assert records_of(hangzhou) == [
        (f"hangzhou-{ids['exit']}", 160, "released", ["exit"]),
        (f"hangzhou-{ids['entry']}", 200, "late", ["entry"]),
    ]


def test_an_exit_whose_entry_gate_uploads_to_a_county_schema_clears_alone_from_the_cards_entry(gates):
    hangzhou, sims, engine = gates
    card = SimCard(card_number("310000", 24))
    # the entry was made at a county's gate (its own schema): the city never gets the entry tap
    codec = TripCodec.for_fare(engine)
    entry = {"s": "hz-1-01", "l": "1", "t": int(AT.timestamp()) // 60, "tm": "330110000011", "d": 0}
    tap_out = sims["exit"].tap(card, at=AT + dt.timedelta(minutes=20), amount_fen=360)
    tap_out["card_trip"] = codec.encode({"e": entry}).hex()
    upload(hangzhou, sims["exit"], [tap_out])
    with tenant_context(hangzhou):
        (j,) = Journey.objects.all()
        assert j.status == "exit_only"
    assert records_of(hangzhou) == []  # held while the entry may still come
    with tenant_context(hangzhou):
        call_command("terminal", "--tenant", "hangzhou", "release-halves")  # now: long past the time-out
    ids = tx_ids(hangzhou, card)
    assert records_of(hangzhou) == [(f"hangzhou-{ids['exit']}", 360, "released", ["exit"])]
    with tenant_context(hangzhou):
        (record,) = outbox_records()
        assert (record["journey"]["origin"], record["journey"]["line"]) == ("hz-1-01", "1")


@pytest.mark.parametrize("exit_first", [False, True])
def test_a_released_half_and_its_late_other_half_net_exactly_the_money_taken(gates, tenant, exit_first):
    hangzhou, sims, engine = gates
    shanghai = tenant("shanghai")
    for sim in sims.values():  # the issuer checks each tap's TAC
        sim.tac_masters["310000"] = tenant_card_tac_master(tenant=shanghai)
    card = SimCard(card_number("310000", 25))
    tap_in, tap_out = deposit_ride(sims, engine, card)
    first, later = (
        (("exit", tap_out), ("entry", tap_in)) if exit_first else (("entry", tap_in), ("exit", tap_out))
    )
    upload(hangzhou, sims[first[0]], [first[1]])
    assert release(hangzhou, at=AT + 2 * TIME_OUT) == 1
    upload(hangzhou, sims[later[0]], [later[1]])
    assert sorted(r[1] for r in records_of(hangzhou)) == [160, 200]
    agreement_set(
        network_code="yrd",
        service="transit",
        valid_from=dt.date(2020, 1, 1),
        issuer_fee_bps=0,
        network_fee_bps=0,
        cut_off=dt.time(4, 0),
        dispute_window_days=30,
        actor="test",
    )
    cards_known(shanghai, [card.card_no])
    assert outbox_collect(tenant=hangzhou)["collected"] == 2  # the release, then the late half
    assert outbox_collect(tenant=hangzhou)["collected"] == 0
    cycle = cycle_get_or_create(network_code="yrd", service="transit", business_date=AT.date())
    later_day = AT + dt.timedelta(days=1)
    cycle_close(cycle=cycle, now=later_day)
    cycle_validate(cycle=cycle, now=later_day)
    cycle_net(cycle=cycle, now=later_day)
    assert cycle_summary(cycle=cycle)["records"] == {"valid": {"records": 2, "amount_fen": 360}}
    positions = dict(cycle.positions.values_list("participant", "net_fen"))
    assert positions == {"hangzhou": 360, "shanghai": -360}


def test_the_beat_task_releases_every_tenants_half_journeys_once(gates, settings):
    assert "terminals-half-journeys-release" in settings.CELERY_BEAT_SCHEDULE
    hangzhou, sims, engine = gates
    card = SimCard(card_number("310000", 26))
    _tap_in, tap_out = deposit_ride(sims, engine, card)
    upload(hangzhou, sims["exit"], [tap_out])
    assert half_journeys_release_all() == {"hangzhou": 1}  # now: long past the time-out
    assert half_journeys_release_all() == {}
    ids = tx_ids(hangzhou, card)
    assert records_of(hangzhou) == [(f"hangzhou-{ids['exit']}", 160, "released", ["exit"])]


# --- a half that took nothing reaches the issuer; own cards' halves are released in the city's books ------


def yrd_transit(*, issuer_fee_bps: int = 0, network_fee_bps: int = 0) -> None:
    agreement_set(
        network_code="yrd",
        service="transit",
        valid_from=dt.date(2020, 1, 1),
        issuer_fee_bps=issuer_fee_bps,
        network_fee_bps=network_fee_bps,
        cut_off=dt.time(4, 0),
        dispute_window_days=30,
        actor="test",
    )


def cycle_through(day: dt.date, *, now: dt.datetime):
    cycle = cycle_get_or_create(network_code="yrd", service="transit", business_date=day)
    for step in (cycle_close, cycle_validate, cycle_net, cycle_settle):
        cycle = step(cycle=cycle, now=now)
    return cycle


def test_a_released_entry_that_took_nothing_reaches_the_issuer_as_a_zero_record_and_moves_no_money(
    gates, tenant
):
    hangzhou, sims, engine = gates
    shanghai = tenant("shanghai")
    for sim in sims.values():  # the issuer checks each tap's TAC
        sim.tac_masters["310000"] = tenant_card_tac_master(tenant=shanghai)
    card = SimCard(card_number("310000", 31))
    tap_in, tap_out, quote = ride(sims, engine, card)
    upload(hangzhou, sims["entry"], [tap_in])
    assert release(hangzhou, at=AT + TIME_OUT) == 1
    entry_id = tx_ids(hangzhou, card)["entry"]
    with tenant_context(hangzhou):
        (record,) = outbox_records()
    assert (record["record_id"], record["amount_fen"], record["journey"]["half"]) == (
        f"hangzhou-{entry_id}",
        0,
        "released",
    )
    (tap,) = record["taps"]
    assert (tap["role"], tap["card_counter"], tap["amount_fen"]) == ("entry", tap_in["card_counter"], 0)
    yrd_transit(issuer_fee_bps=50, network_fee_bps=10)
    cards_known(shanghai, [card.card_no])
    assert outbox_collect(tenant=hangzhou)["collected"] == 1
    # the cycle carries it: validated by the issuer (TAC over 0 fen, counter claimed), netted at zero
    cycle = cycle_through(AT.date(), now=AT + dt.timedelta(days=1))
    assert cycle.state == "settled"
    found = ClearingRecord.objects.with_status().get(record_id=f"hangzhou-{entry_id}")
    assert (found.current_status, found.amount_fen, found.issuer_fee_fen, found.network_fee_fen) == (
        "valid",
        0,
        0,
        0,
    )
    assert cycle_summary(cycle=cycle)["records"] == {"valid": {"records": 1, "amount_fen": 0}}
    assert set(cycle.positions.values_list("net_fen", flat=True)) <= {0}
    assert not cycle.instructions.exists()
    for journal in Journal.objects.filter(cycle=cycle):
        assert sum(journal.postings.values_list("amount_fen", flat=True)) == 0
    with tenant_context(shanghai):
        seen = dict(SeenCounter.objects.filter(card_no=card.card_no).values_list("card_counter", "record_id"))
    assert seen == {tap_in["card_counter"]: f"hangzhou-{entry_id}"}  # no gap in the card's counters
    # the exit, late: alone with the whole fare, into the next open cycle (its day's is settled)
    upload(hangzhou, sims["exit"], [tap_out])
    upload(hangzhou, sims["exit"], [tap_out])  # resent: nothing new
    assert release(hangzhou, at=AT + 3 * TIME_OUT) == 0
    exit_id = tx_ids(hangzhou, card)["exit"]
    assert records_of(hangzhou)[1:] == [(f"hangzhou-{exit_id}", quote.fare_fen, "late", ["exit"])]
    assert outbox_collect(tenant=hangzhou)["collected"] == 1
    assert outbox_collect(tenant=hangzhou)["collected"] == 0
    late = ClearingRecord.objects.get(record_id=f"hangzhou-{exit_id}")
    assert late.cycle_id != cycle.pk and late.amount_fen == quote.fare_fen
    next_cycle = cycle_through(late.cycle.business_date, now=AT + dt.timedelta(days=2))
    positions = dict(next_cycle.positions.values_list("participant", "net_fen"))
    assert sum(positions.values()) == 0 and positions["shanghai"] == -(quote.fare_fen - 2)  # 50 bps: 1.8 → 2
    with tenant_context(shanghai):
        assert SeenCounter.objects.filter(card_no=card.card_no).count() == 2


def test_an_entry_that_took_nothing_arriving_after_its_exit_was_released_reaches_the_issuer_too(gates):
    hangzhou, sims, engine = gates
    card = SimCard(card_number("310000", 32))
    tap_in, tap_out, quote = ride(sims, engine, card)
    upload(hangzhou, sims["exit"], [tap_out])
    assert release(hangzhou, at=AT + 2 * TIME_OUT) == 1
    upload(hangzhou, sims["entry"], [tap_in])  # late, at 0 fen: its counter goes to the issuer alone
    upload(hangzhou, sims["entry"], [tap_in])
    ids = tx_ids(hangzhou, card)
    assert records_of(hangzhou) == [
        (f"hangzhou-{ids['exit']}", quote.fare_fen, "released", ["exit"]),
        (f"hangzhou-{ids['entry']}", 0, "late", ["entry"]),
    ]


def test_an_own_cards_half_journeys_are_released_in_the_citys_books_once_and_send_nothing(gates):
    hangzhou, sims, engine = gates
    entered, exited = SimCard(card_number("330100", 33)), SimCard(card_number("330100", 34))
    tap_in, tap_out, _ = ride(sims, engine, entered)
    _, exit_only = deposit_ride(sims, engine, exited)
    held = SimCard(card_number("110000", 35))  # an issuer no tenant here knows: held, not released
    held_in, _, _ = ride(sims, engine, held)
    upload(hangzhou, sims["entry"], [tap_in, held_in])
    upload(hangzhou, sims["exit"], [exit_only])
    exit_at = AT + dt.timedelta(minutes=20)
    assert release(hangzhou, at=AT + TIME_OUT - dt.timedelta(minutes=1)) == 0  # the same time-out
    assert release(hangzhou, at=AT + TIME_OUT) == 1  # the entry; the exit 20 minutes later
    assert release(hangzhou, at=exit_at + TIME_OUT) == 1
    assert release(hangzhou, at=exit_at + 2 * TIME_OUT) == 0  # never again
    with tenant_context(hangzhou):
        journeys = {j.card_no: j for j in Journey.objects.all()}
        mine = journeys[entered.card_no]
        assert (mine.routing, mine.status, mine.released_at) == ("own", "open", AT + TIME_OUT)
        assert mine.released_tx_id == Transaction.objects.get(card_no=entered.card_no).pk
        theirs = journeys[exited.card_no]
        assert (theirs.status, theirs.released_at) == ("exit_only", exit_at + TIME_OUT)
        assert theirs.released_tx_id == Transaction.objects.get(card_no=exited.card_no).pk
        assert (journeys[held.card_no].routing, journeys[held.card_no].released_at) == ("held", None)
        assert outbox_records() == []  # own cards clear nowhere: nothing leaves the schema
        audited = AuditEntry.objects.filter(action="terminal.half_journeys_release").order_by("seq")
        assert [json.loads(e.payload) for e in audited] == [
            {"released": 1, "own": 1, "cleared": 0, "cleared_fen": 0},
            {"released": 1, "own": 1, "cleared": 0, "cleared_fen": 0},
        ]
    upload(hangzhou, sims["exit"], [tap_out])  # the late exit pairs, and stays released
    with tenant_context(hangzhou):
        mine = Journey.objects.get(card_no=entered.card_no)
        assert (mine.status, mine.released_at) == ("complete", AT + TIME_OUT)
        assert outbox_records() == []


def test_the_release_command_says_how_many_it_released_in_the_citys_books_and_to_clearing(gates):
    hangzhou, sims, engine = gates
    local, visitor = SimCard(card_number("330100", 36)), SimCard(card_number("310000", 37))
    upload(hangzhou, sims["entry"], [ride(sims, engine, local)[0], ride(sims, engine, visitor)[0]])
    out = io.StringIO()
    with tenant_context(hangzhou), translation.override("zh-hans"):
        call_command("terminal", "--tenant", "hangzhou", "release-halves", stdout=out)
        call_command("terminal", "--tenant", "hangzhou", "release-halves", stdout=out)
    assert out.getvalue().splitlines() == [
        "已释放 2 个超时的半程行程：1 个本地卡行程在本市账内结算，1 个异地卡行程送发卡方清算",
        "已释放 0 个超时的半程行程：0 个本地卡行程在本市账内结算，0 个异地卡行程送发卡方清算",
    ]


def test_the_journeys_admin_shows_when_a_half_was_released_and_by_which_tap_in_beijing_time(gates):
    hangzhou, sims, engine = gates
    released, whole = SimCard(card_number("310000", 38)), SimCard(card_number("330100", 39))
    tap_in, _ = deposit_ride(sims, engine, released)
    in_whole, out_whole, quote = ride(sims, engine, whole)
    upload(hangzhou, sims["entry"], [tap_in, in_whole])
    upload(hangzhou, sims["exit"], [out_whole])
    assert release(hangzhou, at=AT + TIME_OUT) == 1
    entry_id = tx_ids(hangzhou, released)["entry"]
    client = Client()
    client.force_login(
        user_create(
            username="hz-journeys", role=Role.CITY_ADMIN, tenant_code="hangzhou", password="a-long-pw-1"
        )
    )
    host = {"HTTP_HOST": "hangzhou.localhost"}
    page = client.get("/admin/terminals/journey/", **host).content.decode()
    for label in (
        "进站时间（北京时间）",
        "半程超时释放时间（北京时间）",
        "半程清算交易编号",
        "票价",
        "已释放",
    ):
        assert label in page, label
    assert "2026-11-23 16:00:00" in page  # released at AT + 6 h, Beijing time (08:00 UTC)
    assert "2026-11-23 10:00:00" in page and "¥2.00" in page and yuan(quote.fare_fen) in page
    listed = client.get("/admin/terminals/journey/?released=yes", **host).content.decode()
    assert released.card_no in listed and whole.card_no not in listed
    unreleased = client.get("/admin/terminals/journey/?released=no", **host).content.decode()
    assert whole.card_no in unreleased and released.card_no not in unreleased
    with tenant_context(hangzhou):
        pk = Journey.objects.get(card_no=released.card_no).pk
    detail = client.get(f"/admin/terminals/journey/{pk}/change/", **host).content.decode()
    assert (
        "2026-11-23 16:00:00" in detail
        and str(entry_id) in detail
        and "半程超时释放时间（北京时间）" in detail
    )


def test_a_cards_last_tap_here_is_where_its_chip_carries_on(gates):
    """``cards_last_taps``: each card's highest-counter tap stored in this schema — its counter and what it
    left on the e-purse (the demo's riders carry on from it on a re-run); a card never tapped here has none.
    The exit uploaded before the entry: the counter decides, not the order stored."""
    from citycard.tenants.terminals.selectors import cards_last_taps

    hangzhou, sims, engine = gates
    card = SimCard(card_number("310000", 25))
    tap_in, tap_out = deposit_ride(sims, engine, card)
    upload(hangzhou, sims["exit"], [tap_out])
    upload(hangzhou, sims["entry"], [tap_in])
    stranger = card_number("310000", 26)
    with tenant_context(hangzhou):
        assert cards_last_taps(card_nos=[card.card_no, stranger]) == {
            card.card_no: (tap_out["card_counter"], tap_out["balance_after_fen"])
        }
        assert tap_out["card_counter"] == tap_in["card_counter"] + 1
        assert cards_last_taps(card_nos=[]) == {}
