"""GTFS-Fares v2 import and export of a tenant's rules (what maps), as rule-document bodies.

Mapping (docs/fares.md has the table):

* ``networks`` + ``route_networks`` (+ ``routes`` for names and route types) ↔ route sets; numeric
  routes come back as ranges; ``route_type`` gives the service (3 bus, 1/2/0 metro, 4 ferry).
* ``timeframes`` (+ ``calendar`` for the weekdays of a ``service_id``) ↔ timeframes.
* ``rider_categories`` ↔ rider category codes by name (senior/elderly/老年 → elderly, student, disabled,
  veteran, low_income); the default category is “no category”.
* ``fare_media`` ↔ card schemes: ids ``01``–``04`` as such, a physical transit card (type 2) → 01/02/03,
  a mobile app (type 4) → 04; cash/none (types 0, 1) → no media (the base fare).
* ``fare_products`` + ``fare_leg_rules``: rows of the default category without a card medium are base
  fare products; other rows are fixed-fare leg rules for their category and media, grouped per
  category. ``rule_priority`` p becomes priority 100·p + 50 for a category rule, + 10 otherwise, + 5
  when the medium is named (so concession rows beat the plain card row, as a rider choosing their
  category would expect); export writes priority // 100.
* ``fare_transfer_rules`` ↔ transfer rules (leg groups name their route set or service; duration in
  seconds ↔ minutes; transfer types as is; the transfer product's amount is AB).

GTFS-Fares v2 cannot say caps, quotas, visitor policies, passes, percentages, validity dates: export
writes them — the whole rule body — to ``citycard_fares.json`` beside the GTFS files (consumers ignore
unknown files) and import prefers that file when present, so a CityCard export round-trips exactly;
percent rules are also written as GTFS products priced against their base fare.
"""

from __future__ import annotations

import csv
import io
import json
import math
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from citycard.terminal_kit.money import bps_of

EXTENSION_FILE = "citycard_fares.json"
ROUTE_TYPES = {"0": "metro", "1": "metro", "2": "metro", "3": "bus", "4": "ferry", "11": "bus", "12": "metro"}
SERVICE_ROUTE_TYPE = {"bus": "3", "metro": "1", "ferry": "4"}
MEDIA_NAMES = {"01": "社会保障·市民卡", "02": "新居民卡", "03": "城市通卡", "04": "电子市民码"}
_CATEGORY_WORDS = [
    ("elderly", ("elder", "senior", "老", "敬老")),
    ("student", ("student", "学生", "pupil")),
    ("disabled", ("disab", "残", "爱心")),
    ("veteran", ("veteran", "军", "优抚")),
    ("low_income", ("low_income", "low-income", "低保", "低收入")),
]
_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class GtfsError(ValueError):
    """A feed that cannot be read; the message names the file and row."""


# --- files -----------------------------------------------------------------------------------------------


def feed_read(path: str | Path) -> dict[str, Any]:
    """The feed's .txt files as lists of rows (a directory or a .zip), plus the CityCard extension."""
    path = Path(path)
    texts: dict[str, str] = {}
    if path.is_dir():
        for file in path.iterdir():
            if file.suffix in (".txt", ".json"):
                texts[file.name] = file.read_text(encoding="utf-8-sig")
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if name.endswith((".txt", ".json")):
                    texts[Path(name).name] = archive.read(name).decode("utf-8-sig")
    else:
        raise GtfsError(f"{path} is neither a directory nor a zip file")
    feed: dict[str, Any] = {}
    for name, text in texts.items():
        if name == EXTENSION_FILE:
            feed[name] = json.loads(text)
        else:
            feed[name] = [
                {k.strip(): (v or "").strip() for k, v in row.items()}
                for row in csv.DictReader(io.StringIO(text))
            ]
    return feed


def feed_write(path: str | Path, feed: Mapping[str, Any]) -> list[str]:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in sorted(feed.items()):
        target = path / name
        if name.endswith(".json"):
            target.write_text(json.dumps(content, ensure_ascii=False, indent=2, sort_keys=True) + "\n")
        else:
            columns: list[str] = []
            for row in content:
                columns.extend(c for c in row if c not in columns)
            with target.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
                writer.writeheader()
                writer.writerows(content)
        written.append(name)
    return written


# --- helpers ---------------------------------------------------------------------------------------------


def _fen(text: str, where: str) -> int:
    try:
        value = Decimal(text) * 100
    except InvalidOperation as exc:
        raise GtfsError(f"{where}: amount {text!r} is not a number") from exc
    if value != value.to_integral_value():
        raise GtfsError(f"{where}: amount {text} has fractions of a fen")
    return int(value)


def _yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def _category(row: Mapping[str, str]) -> str | None:
    text = f"{row.get('rider_category_id', '')} {row.get('rider_category_name', '')}".lower()
    for code, words in _CATEGORY_WORDS:
        if any(word in text for word in words):
            return code
    return None


def _hhmm(text: str, where: str) -> str:
    parts = text.split(":")
    if len(parts) < 2 or not all(p.isdigit() for p in parts):
        raise GtfsError(f"{where}: time {text!r} is not HH:MM:SS")
    return f"{int(parts[0]):02d}:{int(parts[1]):02d}"


def compress_routes(routes: Iterable[str]) -> tuple[list[str], list[list[int]]]:
    """Route names as explicit names plus ranges for runs of three or more consecutive numbers."""
    numbers = sorted({int(r) for r in routes if r.isdigit() and str(int(r)) == r})
    names = sorted({r for r in routes if not (r.isdigit() and str(int(r)) == r)})
    ranges: list[list[int]] = []
    i = 0
    while i < len(numbers):
        j = i
        while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
            j += 1
        if j - i >= 2:
            ranges.append([numbers[i], numbers[j]])
        else:
            names.extend(str(n) for n in numbers[i : j + 1])
        i = j + 1
    return sorted(names, key=lambda r: (len(r), r)), ranges


def _members(route_set: Mapping[str, Any]) -> list[str]:
    found = set(route_set.get("routes", []))
    for low, high in route_set.get("ranges", []):
        found.update(str(n) for n in range(low, high + 1))
    return sorted(found - set(route_set.get("except", [])), key=lambda r: (len(r), r))


# --- import ----------------------------------------------------------------------------------------------


def gtfs_to_rules(feed: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(rule body, notes on what did not map) from a GTFS-Fares v2 feed."""
    if isinstance(feed.get(EXTENSION_FILE), Mapping):
        return dict(feed[EXTENSION_FILE]), [f"rules taken from {EXTENSION_FILE} (a CityCard export)"]
    notes: list[str] = []
    if not feed.get("fare_products.txt"):
        raise GtfsError("fare_products.txt is missing or empty: nothing to import")
    routes = {r["route_id"]: r for r in feed.get("routes.txt", [])}
    categories = {r["rider_category_id"]: r for r in feed.get("rider_categories.txt", [])}
    default_categories = {k for k, r in categories.items() if r.get("is_default_fare_category") == "1"}
    media_rows = {r["fare_media_id"]: r for r in feed.get("fare_media.txt", [])}

    def media_codes(media_id: str) -> list[str] | None:
        """Card schemes for a fare medium; [] = any/cash (a base fare); None = does not map."""
        if not media_id:
            return []
        if media_id in MEDIA_NAMES:
            return [media_id]
        kind = media_rows.get(media_id, {}).get("fare_media_type", "")
        return {"0": [], "1": [], "2": ["01", "02", "03"], "4": ["04"]}.get(kind)

    # networks -> route sets
    by_network: dict[str, set[str]] = defaultdict(set)
    services: dict[str, set[str]] = defaultdict(set)
    for i, row in enumerate(feed.get("route_networks.txt", [])):
        route = routes.get(row.get("route_id", ""), {})
        name = route.get("route_short_name") or row.get("route_id", "")
        if not name:
            raise GtfsError(f"route_networks.txt row {i + 2}: no route_id")
        by_network[row["network_id"]].add(name)
        services[row["network_id"]].add(ROUTE_TYPES.get(route.get("route_type", "3"), "bus"))
    route_sets: dict[str, Any] = {}
    for network, names in sorted(by_network.items()):
        explicit, ranges = compress_routes(names)
        service = next(iter(services[network])) if len(services[network]) == 1 else None
        route_sets[network] = {"service": service, "routes": explicit, "ranges": ranges, "except": []}
    for row in feed.get("networks.txt", []):
        if row["network_id"] in route_sets:
            route_sets[row["network_id"]]["name"] = row.get("network_name", "")

    # timeframes (weekdays from calendar.txt)
    calendar = {
        r["service_id"]: [i + 1 for i, day in enumerate(_DAY_NAMES) if r.get(day) == "1"]
        for r in feed.get("calendar.txt", [])
    }
    timeframes: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for i, row in enumerate(feed.get("timeframes.txt", [])):
        where = f"timeframes.txt row {i + 2}"
        days = calendar.get(row.get("service_id", ""), [1, 2, 3, 4, 5, 6, 7])
        timeframes[row["timeframe_group_id"]].append(
            {
                "days": days,
                "start": _hhmm(row.get("start_time") or "00:00:00", where),
                "end": _hhmm(row.get("end_time") or "24:00:00", where),
            }
        )

    products: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in feed["fare_products.txt"]:
        products[row["fare_product_id"]].append(row)

    body_products: list[dict[str, Any]] = []
    legs: list[dict[str, Any]] = []
    leg_groups: dict[str, tuple[str | None, str | None]] = {}
    taken: set[str] = set()
    for i, row in enumerate(feed.get("fare_leg_rules.txt", [])):
        where = f"fare_leg_rules.txt row {i + 2}"
        network = row.get("network_id") or None
        if network and network not in route_sets:
            raise GtfsError(f"{where}: network {network!r} has no routes in route_networks.txt")
        service = (route_sets[network]["service"] if network else None) or "bus"
        if row.get("from_area_id") or row.get("to_area_id"):
            notes.append(f"{where}: areas (zones) do not map; the rule applies to the whole network")
        if row.get("to_timeframe_group_id") and row.get("to_timeframe_group_id") != row.get(
            "from_timeframe_group_id"
        ):
            notes.append(f"{where}: to_timeframe_group_id ignored (fares are fixed at the tap)")
        timeframe = row.get("from_timeframe_group_id") or None
        priority = int(row.get("rule_priority") or 0) * 100
        product_id = row["fare_product_id"]
        if product_id not in products:
            raise GtfsError(f"{where}: fare_product_id {product_id!r} is not in fare_products.txt")
        if row.get("leg_group_id"):
            leg_groups[row["leg_group_id"]] = (service, network)
        groups: dict[str | None, dict[str, Any]] = {}
        for prow in products[product_id]:
            pwhere = f"fare_products.txt {product_id}"
            amount = _fen(prow.get("amount", "0"), pwhere)
            rider = prow.get("rider_category_id", "")
            category = (
                None
                if (not rider or rider in default_categories)
                else _category(categories.get(rider, {"rider_category_id": rider}))
            )
            if rider and rider not in default_categories and category is None:
                notes.append(f"{pwhere}: rider category {rider!r} does not map to a category; row skipped")
                continue
            media = media_codes(prow.get("fare_media_id", ""))
            if media is None:
                notes.append(f"{pwhere}: fare medium {prow.get('fare_media_id')!r} does not map; row skipped")
                continue
            if category is None and not media:
                if timeframe:
                    notes.append(f"{where}: a base fare cannot depend on a timeframe; timeframe ignored")
                pid = product_id if product_id not in taken else f"{product_id}.{len(taken)}"
                taken.add(pid)
                body_products.append(
                    {
                        "id": pid,
                        "name": prow.get("fare_product_name", ""),
                        "service": service,
                        "route_set": network,
                        "amount_fen": amount,
                        "priority": priority,
                    }
                )
                continue
            group = groups.setdefault(category, {"amount": amount, "media": set()})
            if group["amount"] != amount:
                notes.append(
                    f"{pwhere}: {category or 'default'} rows with different amounts; kept {group['amount']}"
                )
            group["media"].update(media)
        for category, group in sorted(groups.items(), key=lambda g: g[0] or ""):
            lid = product_id if len(groups) == 1 else f"{product_id}.{category or 'all'}"
            while lid in taken:
                lid = f"{lid}.{row.get('network_id') or 'any'}"
            taken.add(lid)
            media = sorted(group["media"])
            legs.append(
                {
                    "id": lid,
                    "name": products[product_id][0].get("fare_product_name", ""),
                    "service": service,
                    "route_set": network,
                    "timeframe": timeframe,
                    "categories": [category] if category else [],
                    "media": media,
                    "kind": "fixed",
                    "value": group["amount"],
                    "priority": priority + (50 if category else 10) + (5 if media else 0),
                }
            )

    transfers = []
    for i, row in enumerate(feed.get("fare_transfer_rules.txt", [])):
        where = f"fare_transfer_rules.txt row {i + 2}"
        src = leg_groups.get(row.get("from_leg_group_id", ""), (None, None))
        dst = leg_groups.get(row.get("to_leg_group_id", ""), (None, None))
        amount = 0
        if row.get("fare_product_id"):
            rows = products.get(row["fare_product_id"])
            if not rows:
                raise GtfsError(
                    f"{where}: fare_product_id {row['fare_product_id']!r} is not in fare_products.txt"
                )
            amount = _fen(rows[0].get("amount", "0"), f"fare_products.txt {row['fare_product_id']}")
        limit = row.get("duration_limit")
        tid = f"{src[1] or src[0] or 'any'}-{dst[1] or dst[0] or 'any'}"
        while tid in {t["id"] for t in transfers}:
            tid += "-2"
        transfers.append(
            {
                "id": tid,
                "from_service": src[0],
                "from_route_set": src[1],
                "to_service": dst[0],
                "to_route_set": dst[1],
                "within_minutes": max(1, math.ceil(int(limit) / 60)) if limit else 24 * 60,
                "max_transfers": int(row.get("transfer_count") or 1),
                "transfer_type": int(row.get("fare_transfer_type") or 0),
                "amount_fen": amount,
                "measure": "previous_tap",
                "priority": 0,
            }
        )
        if transfers[-1]["transfer_type"] != 1 and amount < 0:
            raise GtfsError(f"{where}: a negative transfer amount only makes sense for fare_transfer_type 1")
    # Canonical order, so a feed read twice (or exported and read back) gives equal bodies.
    body = {
        "route_sets": route_sets,
        "timeframes": {
            k: sorted(v, key=lambda w: (w["start"], w["days"])) for k, v in sorted(timeframes.items())
        },
        "quotas": [],
        "fare_products": sorted(body_products, key=lambda p: p["id"]),
        "leg_rules": sorted(legs, key=lambda r: r["id"]),
        "transfer_rules": sorted(transfers, key=lambda t: t["id"]),
        "caps": [],
        "visitor_policy": {"default": "host_rules", "networks": [], "tenants": []},
    }
    return body, notes


# --- export ----------------------------------------------------------------------------------------------


def _base_for(body: Mapping[str, Any], rule: Mapping[str, Any]) -> int | None:
    """The base fare a percent rule discounts (the top product of its service/route set)."""
    candidates = [
        p
        for p in body["fare_products"]
        if p["service"] == (rule.get("service") or p["service"])
        and (p.get("route_set") in (None, rule.get("route_set")))
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda p: (p.get("priority", 0), p.get("route_set") is not None))["amount_fen"]


def rules_to_gtfs(body: Mapping[str, Any]) -> dict[str, Any]:
    """GTFS-Fares v2 files for a rule body, plus the CityCard extension with the whole body."""
    route_sets = body.get("route_sets", {})
    used_categories = sorted({c for r in body.get("leg_rules", []) for c in r.get("categories", [])})
    feed: dict[str, Any] = {
        "rider_categories.txt": [
            {"rider_category_id": "adult", "rider_category_name": "adult", "is_default_fare_category": "1"}
        ]
        + [
            {"rider_category_id": c, "rider_category_name": c, "is_default_fare_category": "0"}
            for c in used_categories
        ],
        "fare_media.txt": [
            {"fare_media_id": code, "fare_media_name": name, "fare_media_type": "4" if code == "04" else "2"}
            for code, name in MEDIA_NAMES.items()
        ],
    }
    routes: dict[str, dict[str, str]] = {}
    route_networks = []
    for rid, rs in sorted(route_sets.items()):
        service = rs.get("service") or "bus"
        for name in _members(rs):
            route_id = f"{service}-{name}"
            routes[route_id] = {
                "route_id": route_id,
                "route_short_name": name,
                "route_type": SERVICE_ROUTE_TYPE.get(service, "3"),
            }
            route_networks.append({"network_id": rid, "route_id": route_id})
    feed["routes.txt"] = list(routes.values())
    feed["networks.txt"] = [
        {"network_id": rid, "network_name": rs.get("name", "")} for rid, rs in sorted(route_sets.items())
    ]
    feed["route_networks.txt"] = route_networks
    timeframes, calendar = [], {}
    for tid, windows in sorted(body.get("timeframes", {}).items()):
        for w in windows:
            days = w.get("days", [1, 2, 3, 4, 5, 6, 7])
            service_id = "days-" + "".join(str(d) for d in sorted(days))
            calendar[service_id] = {
                "service_id": service_id,
                **{name: "1" if i + 1 in days else "0" for i, name in enumerate(_DAY_NAMES)},
                "start_date": "20200101",
                "end_date": "20991231",
            }
            timeframes.append(
                {
                    "timeframe_group_id": tid,
                    "start_time": f"{w['start']}:00",
                    "end_time": f"{w['end']}:00",
                    "service_id": service_id,
                }
            )
    feed["timeframes.txt"] = timeframes
    feed["calendar.txt"] = list(calendar.values())
    products, leg_rules = [], []

    def group_of(service: str | None, route_set: str | None) -> str:
        return route_set or f"all-{service or 'any'}"

    for p in body.get("fare_products", []):
        products.append(
            {
                "fare_product_id": p["id"],
                "fare_product_name": p.get("name", ""),
                "rider_category_id": "",
                "fare_media_id": "",
                "amount": _yuan(p["amount_fen"]),
                "currency": "CNY",
            }
        )
        leg_rules.append(
            {
                "leg_group_id": group_of(p["service"], p.get("route_set")),
                "network_id": p.get("route_set") or "",
                "from_timeframe_group_id": "",
                "to_timeframe_group_id": "",
                "fare_product_id": p["id"],
                "rule_priority": str(p.get("priority", 0) // 100),
            }
        )
    for r in body.get("leg_rules", []):
        if r.get("kind") == "fixed":
            amount = r["value"]
        elif r.get("kind") == "free":
            amount = 0
        else:
            base = _base_for(body, r)
            if base is None:
                continue
            amount = bps_of(base, r["value"]) if r["kind"] == "percent" else max(0, base - r["value"])
        for category in r.get("categories") or ["adult"]:
            for media in r.get("media") or [""]:
                products.append(
                    {
                        "fare_product_id": r["id"],
                        "fare_product_name": r.get("name", ""),
                        "rider_category_id": category,
                        "fare_media_id": media,
                        "amount": _yuan(amount),
                        "currency": "CNY",
                    }
                )
        leg_rules.append(
            {
                "leg_group_id": group_of(r.get("service"), r.get("route_set")),
                "network_id": r.get("route_set") or "",
                "from_timeframe_group_id": r.get("timeframe") or "",
                "to_timeframe_group_id": r.get("timeframe") or "",
                "fare_product_id": r["id"],
                "rule_priority": str(r.get("priority", 0) // 100),
            }
        )
    transfers = []
    for t in body.get("transfer_rules", []):
        product_id = ""
        if t.get("amount_fen"):
            product_id = f"transfer-{t['id']}"
            products.append(
                {
                    "fare_product_id": product_id,
                    "fare_product_name": t.get("name", ""),
                    "rider_category_id": "",
                    "fare_media_id": "",
                    "amount": _yuan(t["amount_fen"]),
                    "currency": "CNY",
                }
            )
        transfers.append(
            {
                "from_leg_group_id": group_of(t.get("from_service"), t.get("from_route_set")),
                "to_leg_group_id": group_of(t.get("to_service"), t.get("to_route_set")),
                "transfer_count": str(t.get("max_transfers", 1)),
                "duration_limit": str(t["within_minutes"] * 60),
                "duration_limit_type": "1",
                "fare_transfer_type": str(t.get("transfer_type", 0)),
                "fare_product_id": product_id,
            }
        )
    feed["fare_products.txt"] = products
    feed["fare_leg_rules.txt"] = leg_rules
    feed["fare_transfer_rules.txt"] = transfers
    feed[EXTENSION_FILE] = {k: v for k, v in body.items() if k not in {"home_divisions", "format"}}
    return feed
