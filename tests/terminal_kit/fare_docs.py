"""Rule documents for the evaluator tests: the demo seeds completed as the back office compiles them."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from citycard.tenants.fares import seeds
from citycard.terminal_kit.fares import Card, FareEngine, Trip

SH = dt.timezone(dt.timedelta(hours=8))
YRD = ["310000", "330100", "330400"]
HZ_HOMES = ["330100", "330122"]
JX_HOMES = ["330400", "330424"]


def document(seed: dict[str, Any], *, tenant: str, homes: list[str], version: int = 1, **changes) -> dict:
    doc = copy.deepcopy(seed)
    for entry in doc["visitor_policy"]["networks"]:
        entry["members"] = YRD if entry["network"] == "yrd" else ["441900", "440300"]
    doc.update(format=1, tenant=tenant, kind="fare_rules", version=version, home_divisions=homes)
    doc.update(changes)
    return doc


def hangzhou(**changes) -> dict:
    return document(seeds.HANGZHOU, tenant="hangzhou", homes=HZ_HOMES, **changes)


def hangzhou_metro(**changes) -> dict:
    """Hangzhou's rules with metro line 1's stations, distance table and gate rules (the demo's)."""
    doc = hangzhou(**changes)
    metro = copy.deepcopy(seeds.HANGZHOU_METRO)
    doc["fare_products"] = doc["fare_products"] + metro.pop("fare_products")
    doc.update(metro)
    return doc


def jiaxing(**changes) -> dict:
    return document(seeds.JIAXING, tenant="jiaxing", homes=JX_HOMES, **changes)


def engine(doc: dict) -> FareEngine:
    return FareEngine.from_payload(doc)


def card(issuer: str = "330100", scheme: str = "01", categories=(), passes=()) -> Card:
    return Card(issuer=issuer, scheme_code=scheme, categories=frozenset(categories), passes=frozenset(passes))


def trip(route: str, at: str = "2026-11-23 10:10", service: str = "bus") -> Trip:
    return Trip(service=service, route=route, at=dt.datetime.fromisoformat(at).replace(tzinfo=SH))
