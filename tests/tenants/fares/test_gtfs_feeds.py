"""GTFS-Fares v2 as real feeds say it: one sample feed per way of saying a thing (network_id in routes.txt,
zones, a foreign currency, no time limit), each imported, priced, exported with its ids as given, read
back unchanged, and every exported feed (these and the demo cities') checked by a third-party validator
and by the project's own field table."""

from __future__ import annotations

import copy
import datetime as dt
import re
from decimal import Decimal
from pathlib import Path

import pytest

from citycard.tenants.fares import seeds
from citycard.tenants.fares.gtfs import (
    EXTENSION_FILE,
    FIELDS,
    GtfsError,
    feed_read,
    feed_write,
    gtfs_to_rules,
    rules_to_gtfs,
)
from citycard.terminal_kit.fares import Card, FareEngine, Trip

from .gtfs_check import validator_errors

FEEDS = Path(__file__).parent / "gtfs_feeds"
SAMPLE = Path(__file__).parent / "gtfs_sample"
SH = dt.timezone(dt.timedelta(hours=8))
AT = dt.datetime(2026, 11, 23, 10, 0, tzinfo=SH)
VISITOR = Card(issuer="999999")  # no home division: the base fare


def engine(body: dict) -> FareEngine:
    return FareEngine.from_payload({**body, "tenant": "t", "version": 1, "home_divisions": ["330100"]})


def read(name: str, **kw) -> tuple[dict, list[str]]:
    return gtfs_to_rules(feed_read(FEEDS / name), **kw)


def exported(body: dict, path: Path) -> Path:
    source = body.get("gtfs")
    feed = rules_to_gtfs({k: v for k, v in body.items() if k != "gtfs"}, source=source)
    feed_write(path, feed)
    return path


def test_network_id_in_routes_txt_and_long_route_names_kept_whole(tmp_path):
    body, notes = read("network_in_routes")
    assert notes == []
    assert body["route_sets"]["local"]["routes"] == ["Red Line", "Blue Line Airport Express via Riverside"]
    assert body["route_sets"]["express"]["routes"] == ["X1"]
    # a quote for the long-named route finds its product (no name cut at 20 characters)
    quote = engine(body).quote(VISITOR, Trip("metro", "Blue Line Airport Express via Riverside", AT))
    assert quote.fare_fen == 300
    feed = feed_read(exported(body, tmp_path / "out"))
    assert [r["route_id"] for r in feed["routes.txt"]] == ["X1", "Red", "Blue"] or sorted(
        r["route_id"] for r in feed["routes.txt"]
    ) == ["Blue", "Red", "X1"]
    assert {r["route_id"]: r["network_id"] for r in feed["routes.txt"]} == {
        "Blue": "local",
        "Red": "local",
        "X1": "express",
    }
    assert (
        "route_networks.txt" not in feed and "networks.txt" not in feed
    )  # forbidden beside routes' network_id
    blue = next(r for r in feed["routes.txt"] if r["route_id"] == "Blue")
    assert (
        blue["route_long_name"] == "Blue Line Airport Express via Riverside"
        and blue["route_short_name"] == ""
    )


def test_zone_pairs_import_without_priority_clashes_and_price_by_area_pair(tmp_path):
    body, notes = read("zones")
    assert notes == []
    assert sorted(body["areas"]) == ["zone_a", "zone_b", "zone_c"]
    assert body["joins"] == [{"from_stop": "B2", "to_stop": "B2p"}]
    ids = [p["id"] for p in body["fare_products"]]
    assert ids[:3] == ["one_zone", "one_zone::2", "one_zone::3"]
    e = engine(body)  # nine same-priority products, disjoint area pairs: accepted

    def fare(a, b):
        return e.quote(VISITOR, Trip("metro", "1", AT, origin=a, destination=b))

    assert fare("A1", "A2").fare_fen == 200
    assert fare("A1", "B1").fare_fen == 300
    assert fare("C1", "A2").fare_fen == 400
    assert "areas zone_c -> zone_a 400 fen" in fare("C1", "A2").trace[1]
    feed = feed_read(exported(body, tmp_path / "out"))
    assert sorted({r["fare_product_id"] for r in feed["fare_leg_rules.txt"]}) == [
        "one_zone",
        "three_zones",
        "two_zones",
    ]
    assert len(feed["fare_products.txt"]) == 3
    assert feed["fare_leg_join_rules.txt"] == [
        {"from_network_id": "subway", "to_network_id": "subway", "from_stop_id": "B2", "to_stop_id": "B2p"}
    ]


def test_a_foreign_currency_is_refused_unless_a_rate_converts_it():
    with pytest.raises(GtfsError, match=r"currency USD is not the tenant's \(CNY\).*--rate USD="):
        read("usd")
    body, notes = read("usd", rates={"USD": Decimal("7.10")})
    assert body["fare_products"][0]["amount_fen"] == 355
    assert notes == ["fare_products.txt bus: 0.50 USD converted at 7.10 -> 355 fen CNY"]


def test_an_empty_duration_limit_is_no_limit_and_transfer_count_minus_one_unlimited(tmp_path):
    body, notes = read("no_limit")
    assert notes == []
    (transfer,) = body["transfer_rules"]
    assert transfer["within_minutes"] is None and transfer["max_transfers"] == -1
    e = engine(body)
    first = e.quote(VISITOR, Trip("bus", "1", AT))
    later = e.quote(Card(issuer="330100"), Trip("bus", "2", AT + dt.timedelta(days=3)), first.state)
    assert later.fare_fen == 0 and later.rule_id == transfer["id"]
    (row,) = feed_read(exported(body, tmp_path / "out"))["fare_transfer_rules.txt"]
    assert (row["duration_limit"], row["duration_limit_type"], row["transfer_count"]) == ("", "", "-1")
    assert row["fare_product_id"] == "free_transfer"


@pytest.mark.parametrize("name", ["network_in_routes", "zones", "no_limit", "usd", "calendar"])
def test_each_sample_feed_reads_back_unchanged_from_its_export(tmp_path, name):
    rates = {"USD": Decimal("7.10")} if name == "usd" else None
    body, _ = read(name, rates=rates)
    path = exported(body, tmp_path / "out")
    (path / EXTENSION_FILE).unlink()
    again, _ = gtfs_to_rules(feed_read(path))
    if name == "usd":  # exported in yuan: read back without a rate
        assert again["fare_products"] == body["fare_products"]
    else:
        assert again == body


def _demo_bodies() -> dict[str, dict]:
    hangzhou = copy.deepcopy(seeds.HANGZHOU)
    shenzhen = copy.deepcopy(seeds.GENERIC)
    for body, metro in ((hangzhou, seeds.HANGZHOU_METRO), (shenzhen, seeds.SHENZHEN_METRO)):
        for key, value in copy.deepcopy(metro).items():
            if key == "fare_products":
                body[key] += value
            else:
                body[key] = value
    return {"hangzhou": hangzhou, "shenzhen": shenzhen, "jiaxing": copy.deepcopy(seeds.JIAXING)}


def _every_export(tmp_path) -> dict[str, Path]:
    out = {name: exported(body, tmp_path / name) for name, body in _demo_bodies().items()}
    for name in ("network_in_routes", "zones", "no_limit", "calendar"):
        out[name] = exported(read(name)[0], tmp_path / name)
    out["usd"] = exported(read("usd", rates={"USD": Decimal("7.10")})[0], tmp_path / "usd")
    out["sample"] = exported(gtfs_to_rules(feed_read(SAMPLE))[0], tmp_path / "sample")
    return out


def test_calendar_service_ids_named_by_timeframes_are_kept_and_written_back_as_imported(tmp_path):
    body, notes = read("calendar")
    assert body["timeframes"]["weekday_peak"][0]["days"] == [1, 2, 3, 4, 5]
    peak = engine(body).quote(Card(issuer="330100"), Trip("bus", "1", AT.replace(hour=8)), {})
    assert peak.fare_fen == 150  # Monday 08:00: the WKDY_2026 service's peak
    assert any("service FESTIVAL has only dated exceptions" in n for n in notes)
    feed = feed_read(exported(body, tmp_path / "out"))
    assert {r["timeframe_group_id"]: r["service_id"] for r in feed["timeframes.txt"]} == {
        "weekday_peak": "WKDY_2026",
        "festival": "FESTIVAL",
    }
    # as the feed gave them: the service's own dates; the exception dates; a service no timeframe names
    # (WEEKEND_2026) is not the rules' and is not written
    assert feed["calendar.txt"] == [
        {
            "service_id": "WKDY_2026",
            **{d: "1" for d in ("monday", "tuesday", "wednesday", "thursday", "friday")},
            "saturday": "0",
            "sunday": "0",
            "start_date": "20260101",
            "end_date": "20261231",
        }
    ]
    assert [(r["service_id"], r["date"], r["exception_type"]) for r in feed["calendar_dates.txt"]] == [
        ("FESTIVAL", "20260214", "1"),
        ("FESTIVAL", "20260303", "1"),
        ("WKDY_2026", "20261001", "2"),
    ]
    # the sample feed's services too
    sample = feed_read(exported(gtfs_to_rules(feed_read(SAMPLE))[0], tmp_path / "sample"))
    assert {r["service_id"] for r in sample["calendar.txt"]} == {"weekdays", "weekend"}
    # a timeframe added since the import gets a service of its own
    body["timeframes"]["evening"] = [{"days": [6, 7], "start": "19:00", "end": "23:00"}]
    again = feed_read(exported(body, tmp_path / "changed"))
    assert {r["service_id"] for r in again["calendar.txt"]} == {"WKDY_2026", "days-67"}


def test_every_exported_feed_passes_the_third_party_validator(tmp_path):
    problems = {}
    for name, path in _every_export(tmp_path).items():
        errors = validator_errors(path, tmp_path / f"{name}-report")
        # GTFS allows a negative amount for a transfer discount (fare_transfer_type 1, A+AB+B); this
        # validator's number range check does not know that exception: only those rows are let through.
        transfer_products = {
            r["fare_product_id"]
            for r in feed_read(path).get("fare_transfer_rules.txt", [])
            if r["fare_transfer_type"] == "1"
        }
        rows = feed_read(path).get("fare_products.txt", [])
        errors = [
            e
            for e in errors
            if not (
                e["code"] == "number_out_of_range"
                and all(
                    s["filename"] == "fare_products.txt"
                    and rows[s["csvRowNumber"] - 2]["fare_product_id"] in transfer_products
                    for s in e["samples"]
                )
            )
        ]
        if errors:
            problems[name] = errors
    assert problems == {}


def test_the_validator_does_report_a_broken_feed(tmp_path):
    """The check can fail: an undefined leg group and a transfer count where it is forbidden."""
    path = exported(read("no_limit")[0], tmp_path / "broken")
    rules = path / "fare_transfer_rules.txt"
    rules.write_text(rules.read_text().replace("city,city,-1", "city,all-metro,1"))
    codes = {e["code"] for e in validator_errors(path, tmp_path / "report")}
    assert {"foreign_key_violation", "fare_transfer_rule_with_forbidden_transfer_count"} <= codes


def test_every_file_and_column_read_or_written_is_in_the_field_table(tmp_path):
    for name, path in _every_export(tmp_path).items():
        for file, rows in feed_read(path).items():
            if file == EXTENSION_FILE:
                continue
            assert file in FIELDS, (name, file)
            assert set(rows[0]) <= set(FIELDS[file]), (name, file, set(rows[0]) - set(FIELDS[file]))
    docs = (Path(__file__).parents[3] / "docs" / "fares.md").read_text()
    for file, fields in FIELDS.items():
        for field in fields:
            assert re.search(rf"\| `{re.escape(file)}` \| `{field}` \|", docs), (file, field)


def test_unread_files_and_columns_are_named_in_the_notes(tmp_path):
    feed = feed_read(FEEDS / "zones")
    feed["fare_attributes.txt"] = [{"fare_id": "x", "price": "1.00"}]
    feed["stops.txt"] = [{**row, "wheelchair_boarding": "1"} for row in feed["stops.txt"]]
    _, notes = gtfs_to_rules(feed)
    assert (
        "fare_attributes.txt is not read (GTFS-Fares v1 or not supported): its fares are not imported"
        in notes
    )
    assert "stops.txt: column(s) wheelchair_boarding not read" in notes
