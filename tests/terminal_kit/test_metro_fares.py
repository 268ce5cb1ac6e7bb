"""Origin–destination fares: stations, areas (zone pairs), distance fare tables, in-system transfers and
the gate rules of a tap-in/tap-out journey — the pure evaluator, no card."""

from __future__ import annotations

import copy
import datetime as dt

import pytest

from citycard.tenants.fares import seeds
from citycard.terminal_kit.fares import FareEngine, FareError, RuleDocumentError, Trip
from tests.terminal_kit.fare_docs import SH, card, hangzhou


def metro_doc(**changes) -> dict:
    """Hangzhou's rules with metro line 1 priced by the distance table (and the flat fare kept below)."""
    doc = hangzhou()
    frag = copy.deepcopy(seeds.HANGZHOU_METRO)
    for key in ("stops", "lines", "fare_tables", "gate_rules"):
        doc[key] = frag[key]
    doc["areas"] = frag["areas"]
    doc["fare_products"] += frag["fare_products"]
    doc.update(changes)
    return doc


HZ = FareEngine.from_payload(metro_doc())
AT = dt.datetime(2026, 11, 23, 10, 10, tzinfo=SH)


def od(origin: str, destination: str, *, at: dt.datetime = AT, line: str = "1") -> Trip:
    return Trip(service="metro", route=line, at=at, origin=origin, destination=destination)


def s(n: int) -> str:
    return f"hz-1-{n:02d}"


@pytest.mark.parametrize(
    ("origin", "destination", "km", "base"),
    [
        (1, 2, 2.1, 200),  # within the first 4 km
        (1, 3, 3.7, 200),
        (1, 4, 5.2, 300),  # 4-8 km
        (1, 6, 9.4, 400),  # 8-12 km
        (1, 9, 13.4, 500),  # 12-18 km
        (1, 12, 16.2, 500),
        (12, 1, 16.2, 500),  # symmetric
    ],
)
def test_distance_table_prices_entry_to_exit_and_says_which_cell(origin, destination, km, base):
    quote = HZ.quote(card(issuer="310000"), od(s(origin), s(destination)))  # a YRD visitor, no discount
    # the visitor keeps home categories but gets the card discount (host rules): 90% of the base
    assert quote.base_fen == base
    assert HZ.distance("km", s(origin), s(destination)) == round(km * 1000)
    cell = next(line for line in quote.trace if line.startswith("base:"))
    assert "hz-metro -> hz-metro" in cell and f"{km:g} km" in cell and f"-> {base} fen" in cell


def test_the_row_boundary_is_inclusive_and_beyond_the_table_adds_per_step():
    table = HZ.rules.tables["hz-metro-km"]
    assert table.price(4000)[0] == 200 and table.price(4001)[0] == 300
    assert table.price(24_000)[0] == 600
    assert table.price(24_001)[0] == 700 and table.price(32_000)[0] == 700 and table.price(32_001)[0] == 800
    assert "row > 24 km: 600 + 2 x 100 per 8 km -> 800 fen" in table.price(32_001)[1]


def test_leg_rules_apply_to_the_od_base_fare():
    local = HZ.quote(card(), od(s(1), s(6)))
    assert (local.base_fen, local.fare_fen, local.winner) == (400, 360, "hz-metro-card")
    elderly = HZ.quote(card(categories=["elderly"]), od(s(1), s(6)))
    assert elderly.fare_fen == 200


def test_a_trip_without_stations_gets_the_flat_product_and_an_od_trip_the_table():
    assert HZ.quote(card(), Trip("metro", "1", AT)).base_fen == 400  # hz-metro flat fare
    assert HZ.quote(card(), od(s(1), s(2))).base_fen == 200


def test_unknown_station_or_no_path_is_refused():
    with pytest.raises(FareError, match="not in the rules"):
        HZ.distance("km", "nowhere", s(1))
    doc = metro_doc()
    doc["stops"].append({"id": "island", "name": "island"})
    doc["areas"]["hz-metro"]["stops"].append("island")
    with pytest.raises(FareError, match="no way inside the gates"):
        FareEngine.from_payload(doc).quote(card(), od(s(1), "island"))


def zone_doc() -> dict:
    """Zone pairs (GTFS areas + fare_leg_rules by from_area_id/to_area_id): inner/outer, same priority."""
    doc = metro_doc()
    doc["areas"] = {
        "inner": {"stops": [s(n) for n in range(7, 13)]},
        "outer": {"stops": [s(n) for n in range(1, 7)]},
    }
    doc["fare_products"] = [p for p in doc["fare_products"] if p["id"] != "hz-metro-km"]
    pairs = {
        ("inner", "inner"): 200,
        ("outer", "outer"): 300,
        ("inner", "outer"): 400,
        ("outer", "inner"): 450,
    }
    for (a, b), fen in pairs.items():
        doc["fare_products"].append(
            {
                "id": f"z-{a}-{b}",
                "service": "metro",
                "from_area": a,
                "to_area": b,
                "amount_fen": fen,
                "priority": 5,
            }
        )
    return doc


def test_zone_pairs_of_equal_priority_are_accepted_and_priced_by_the_pair():
    engine = FareEngine.from_payload(zone_doc())  # four same-priority products: disjoint area pairs
    visitor = card(issuer="441900")  # outside the network: no concession, the base fare
    assert engine.quote(visitor, od(s(8), s(9))).fare_fen == 200
    assert engine.quote(visitor, od(s(2), s(3))).fare_fen == 300
    assert engine.quote(visitor, od(s(8), s(2))).fare_fen == 400
    quote = engine.quote(visitor, od(s(2), s(8)))
    assert (
        quote.fare_fen == 450 and "product z-outer-inner for areas outer -> inner 450 fen" in quote.trace[1]
    )


def test_overlapping_zone_pairs_of_equal_priority_are_refused():
    doc = zone_doc()
    doc["areas"]["outer"]["stops"].append(s(7))  # station 7 now in both zones
    with pytest.raises(RuleDocumentError, match="same priority 5"):
        FareEngine.from_payload(doc)


def test_leg_rule_by_area_pair():
    doc = zone_doc()
    doc["leg_rules"].append(
        {
            "id": "inner-free-sunday",
            "service": "metro",
            "from_area": "inner",
            "to_area": "inner",
            "kind": "free",
            "priority": 90,
        }
    )
    engine = FareEngine.from_payload(doc)
    assert engine.quote(card(), od(s(8), s(9))).winner == "inner-free-sunday"
    assert engine.quote(card(), od(s(2), s(9))).winner == "hz-metro-card"


def net_engine() -> FareEngine:
    doc = hangzhou()
    doc.update(seeds.metro_network(lines=3, stations=50))
    doc["areas"] = {"net": {"stops": [x["id"] for x in doc["stops"]]}}
    doc["fare_tables"] = [
        {"id": "by-stations", "measure": "stations", "rows": [[5, 200], [10, 300], [20, 400]]}
    ]
    doc["fare_products"].append(
        {
            "id": "net",
            "service": "metro",
            "from_area": "net",
            "to_area": "net",
            "fare_table": "by-stations",
            "priority": 5,
        }
    )
    return FareEngine.from_payload(doc)


def test_in_system_transfer_at_a_shared_station_and_at_joined_platforms_is_one_journey():
    engine = net_engine()
    # line 0 station 18 -> interchange (line 0 station 20 = line 1 station 5) -> line 1 station 7: 4 stations
    assert engine.distance("stations", "net-0-18", "net-1-07") == 4
    # joined platforms: line 0 station 40 and line 1 station 30 are one interchange, 0 stations between
    assert engine.distance("stations", "net-0-40", "net-1-30") == 0
    assert engine.distance("stations", "net-0-39", "net-1-31") == 2
    quote = engine.quote(card(issuer="441900"), od("net-0-18", "net-1-07", line="L0"))
    assert quote.fare_fen == 200 and "4 stations, row <= 5 stations -> 200 fen" in quote.trace[1]
    # beyond the last row without `beyond`: the last row is the maximum
    far = engine.quote(card(issuer="441900"), od("net-0-00", "net-2-49", line="L0"))
    assert far.fare_fen == 400 and "beyond the last row" in far.trace[1]


def test_document_problems_are_all_named():
    doc = metro_doc()
    doc["lines"].append({"id": "2", "stops": [["nowhere", 0], [s(1), 0], [s(2), 0]]})
    doc["fare_tables"].append({"id": "bad", "rows": [[4, 300], [3, 200]]})
    doc["areas"]["empty"] = {"stops": []}
    doc["fare_products"].append(
        {"id": "both", "service": "metro", "amount_fen": 1, "fare_table": "hz-metro-km", "priority": 99}
    )
    with pytest.raises(RuleDocumentError) as raised:
        FareEngine.from_payload(doc)
    text = str(raised.value)
    assert "line 2: station 'nowhere' is not in stops" in text
    assert "is not beyond" in text
    assert "fare table bad: row [3, 200] must go further" in text
    assert "area empty: stops must be a non-empty list" in text
    assert "fare product both: has both amount_fen and fare_table" in text


# --- gates ------------------------------------------------------------------------------------------------


def entry(engine, station, at, state=None):
    return engine.entry(card(), Trip("metro", "1", at, origin=station), state, terminal="330100000009")


def leave(engine, station, at, state):
    return engine.exit(card(), Trip("metro", "1", at, destination=station), state)


def test_entry_then_exit_prices_the_journey_and_clears_the_entry():
    e = entry(HZ, s(1), AT)
    assert e.fare_fen == 0 and e.state["e"] == {
        "s": s(1),
        "l": "1",
        "t": int(AT.timestamp()) // 60,
        "tm": "330100000009",
        "d": 0,
    }
    x = leave(HZ, s(6), AT + dt.timedelta(minutes=20), e.state)
    assert x.fare_fen == 360 and "e" not in x.state and x.state["j"]["s"] == "metro"
    assert x.trace[0] == f"journey {s(1)} -> {s(6)}, 20 min"


def test_exit_without_entry_pays_the_penalty():
    x = leave(HZ, s(6), AT, {})
    assert (x.fare_fen, x.rule_id) == (900, "gate:no-entry")


def test_same_station_exit_within_the_window_pays_the_minimum_and_after_it_the_table():
    e = entry(HZ, s(3), AT)
    assert leave(HZ, s(3), AT + dt.timedelta(minutes=30), e.state).rule_id == "gate:same-station"
    late = leave(HZ, s(3), AT + dt.timedelta(minutes=31), e.state)
    assert late.rule_id == "hz-metro-card" and late.base_fen == 200  # 0 km: the first row


def test_no_exit_within_the_limit_costs_the_maximum_at_the_next_entry_or_at_a_late_exit():
    e = entry(HZ, s(1), AT)
    again = entry(HZ, s(2), AT + dt.timedelta(hours=5), e.state)
    assert (again.fare_fen, again.rule_id) == (900, "gate:incomplete")
    assert again.state["e"]["s"] == s(2)
    late = leave(HZ, s(2), AT + dt.timedelta(minutes=241), e.state)
    assert (late.fare_fen, late.rule_id) == (900, "gate:incomplete")
    assert leave(HZ, s(2), AT + dt.timedelta(minutes=240), e.state).rule_id == "hz-metro-card"


def test_an_entry_deposit_is_taken_off_the_exit_fare():
    doc = metro_doc()
    doc["gate_rules"][0]["entry_fen"] = 200
    engine = FareEngine.from_payload(doc)
    e = entry(engine, s(1), AT)
    assert e.fare_fen == 200
    x = leave(engine, s(6), AT + dt.timedelta(minutes=20), e.state)
    assert x.fare_fen == 160 and x.trace[-1] == "entry deposit 200 fen taken off: 160 fen"


def test_gate_without_rules_or_at_an_unknown_station_is_refused():
    with pytest.raises(FareError, match="no gate rules for bus"):
        HZ.entry(card(), Trip("bus", "1", AT, origin=s(1)))
    with pytest.raises(FareError, match="not in the rules"):
        entry(HZ, "nowhere", AT)


def test_gates_do_not_mutate_the_state():
    state = {"q": {"x": [1, 1]}}
    e = entry(HZ, s(1), AT, state)
    frozen = copy.deepcopy(e.state)
    leave(HZ, s(2), AT + dt.timedelta(minutes=5), e.state)
    assert state == {"q": {"x": [1, 1]}} and e.state == frozen
