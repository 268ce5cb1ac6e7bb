"""GTFS-Fares v2: import a sample feed, price with it, export, import again (round trip)."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
from django.utils import translation
from django_tenants.utils import tenant_context

from citycard.platform.errors import DomainError
from citycard.tenants.fares import seeds, selectors, services
from citycard.tenants.fares.gtfs import EXTENSION_FILE, compress_routes, feed_read, gtfs_to_rules

from .conftest import EFFECTIVE, SH

pytestmark = pytest.mark.django_db
SAMPLE = Path(__file__).parent / "gtfs_sample"
MONDAY_10 = dt.datetime(2026, 11, 23, 10, 0, tzinfo=SH)


def test_sample_feed_maps(tmp_path):
    body, notes = gtfs_to_rules(feed_read(SAMPLE))
    assert notes == []
    assert body["route_sets"]["city_bus"] == {
        "service": "bus",
        "routes": ["2", "K11"],
        "ranges": [[4, 10]],
        "except": [],
        "name": "City buses",
    }
    # one GTFS product on two networks: two base products, the second named after the first
    assert [(p["id"], p["service"], p["route_set"], p["amount_fen"]) for p in body["fare_products"]] == [
        ("bus_cash", "bus", "city_bus", 200),
        ("bus_cash::2", "bus", "lines_1_3", 200),
        ("metro_cash", "metro", "metro", 400),
    ]
    assert body["gtfs"]["products"]["bus_cash::2"] == "bus_cash"
    assert body["gtfs"]["product_media"] == {"bus_cash": "cash", "bus_cash::2": "cash", "metro_cash": "cash"}
    legs = {r["id"]: r for r in body["leg_rules"]}
    assert legs["bus_card"]["media"] == ["01", "02", "03", "04"] and legs["bus_card"]["value"] == 180
    assert (
        legs["senior_offpeak"]["categories"] == ["elderly"]
        and legs["senior_offpeak"]["timeframe"] == "offpeak"
    )
    assert legs["lines13_card"]["priority"] > legs["bus_card"]["priority"]
    assert body["timeframes"]["offpeak"] == [
        {"days": [6, 7], "start": "00:00", "end": "24:00"},
        {"days": [1, 2, 3, 4, 5], "start": "09:00", "end": "17:00"},
    ]
    assert body["transfer_rules"][0] | {} == {
        "id": "bus-bus",  # leg group "bus" spans two networks: any bus route
        "name": "Transfer within 90 minutes",
        "from_service": "bus",
        "from_route_set": None,
        "to_service": "bus",
        "to_route_set": None,
        "within_minutes": 90,
        "max_transfers": 1,
        "transfer_type": 1,
        "amount_fen": -100,
        "measure": "previous_tap",
        "priority": 0,
    }


def _import(tenant_obj, path):
    with tenant_context(tenant_obj):
        return services.fares_import_gtfs(tenant=tenant_obj, path=str(path), actor="test")


def test_import_publish_quote_export_import_round_trip(tenant, tmp_path):
    jiaxing = tenant("jiaxing")
    counts, notes = _import(jiaxing, SAMPLE)
    assert counts["leg_rules"] == 7 and notes == []
    with tenant_context(jiaxing):
        services.fares_publish(tenant=jiaxing, actor="test", effective_from=EFFECTIVE)

    def fare(route, service="bus", categories=(), at=MONDAY_10, state=None):
        return selectors.fares_quote(
            tenant=jiaxing, route=route, service=service, categories=categories, at=at, state=state
        ).quote

    assert fare("5").fare_fen == 180
    assert fare("3").fare_fen == 100
    assert fare("M1", "metro").fare_fen == 360
    assert fare("5", categories=["elderly"]).fare_fen == 0
    assert fare("5", categories=["elderly"], at=MONDAY_10.replace(hour=8)).fare_fen == 180
    assert fare("5", categories=["student"]).fare_fen == 100
    first = fare("5")
    assert fare("7", at=MONDAY_10 + dt.timedelta(minutes=30), state=first.state).fare_fen == 80

    exported = tmp_path / "export"
    with tenant_context(jiaxing):
        files = selectors.fares_export_gtfs(tenant=jiaxing, path=str(exported))
        rows = selectors.fares_rules_body()
    assert "fare_leg_rules.txt" in files and EXTENSION_FILE in files
    # the GTFS files alone give back the same rules
    (exported / EXTENSION_FILE).unlink()
    again, notes = gtfs_to_rules(feed_read(exported))
    assert notes == []
    assert again == gtfs_to_rules(feed_read(SAMPLE))[0]
    _import(jiaxing, exported)
    with tenant_context(jiaxing):
        assert selectors.fares_rules_body() == rows


def test_citycard_export_round_trips_what_gtfs_cannot_say(tenant, tmp_path):
    hangzhou = tenant("hangzhou")
    with tenant_context(hangzhou):
        services.fares_document_load(tenant=hangzhou, document=seeds.HANGZHOU, actor="test")
        before = selectors.fares_rules_body()
        selectors.fares_export_gtfs(tenant=hangzhou, path=str(tmp_path))
    shutil.make_archive(str(tmp_path.parent / "feed"), "zip", tmp_path)
    jiaxing = tenant("jiaxing")
    _counts, notes = _import(jiaxing, tmp_path.parent / "feed.zip")
    assert notes == [f"rules taken from {EXTENSION_FILE} (a CityCard export)"]
    with tenant_context(jiaxing):
        assert selectors.fares_rules_body() == before  # caps, quotas, passes, visitor policies included


def test_bad_feed_refused_nothing_written(tenant, tmp_path):
    shutil.copytree(SAMPLE, tmp_path / "feed")
    products = tmp_path / "feed" / "fare_products.txt"
    products.write_text(products.read_text().replace("1.80", "1.805"))
    jiaxing = tenant("jiaxing")
    with pytest.raises(DomainError, match="含有不足一分的部分"):  # a person reads the refusal in Chinese
        _import(jiaxing, tmp_path / "feed")
    with translation.override("en"), pytest.raises(DomainError, match="fractions of a fen"):
        _import(jiaxing, tmp_path / "feed")
    with tenant_context(jiaxing):
        assert selectors.fares_rules_body()["fare_products"] == []  # nothing written


def test_compress_routes():
    assert compress_routes(["1", "2", "3", "5", "7", "8", "9", "10", "B1"]) == (
        ["5", "B1"],
        [[1, 3], [7, 10]],
    )


def test_long_route_names_and_ids_survive_the_rule_rows_whole(tenant, tmp_path):
    """Route names are text[] (a varchar(20)[] cast cut them, and a quote then found no product)."""
    long_name = ("Blue Line Airport Express via Riverside and the Old Town " * 4).strip()
    feed = tmp_path / "feed"
    shutil.copytree(Path(__file__).parent / "gtfs_feeds" / "network_in_routes", feed)
    routes = feed / "routes.txt"
    routes.write_text(routes.read_text().replace("Blue Line Airport Express via Riverside", long_name))
    jiaxing = tenant("jiaxing")
    _import(jiaxing, feed)
    with tenant_context(jiaxing):
        assert long_name in selectors.fares_rules_body()["route_sets"]["local"]["routes"]
        services.fares_publish(tenant=jiaxing, actor="test", effective_from=EFFECTIVE)
        exported = tmp_path / "out"
        selectors.fares_export_gtfs(tenant=jiaxing, path=str(exported))
    quote = selectors.fares_quote(tenant=jiaxing, route=long_name, service="metro", at=MONDAY_10).quote
    assert quote.fare_fen == 300
    rows = {r["route_id"]: r for r in feed_read(exported)["routes.txt"]}
    assert rows["Blue"]["route_long_name"] == long_name and rows["Blue"]["network_id"] == "local"
