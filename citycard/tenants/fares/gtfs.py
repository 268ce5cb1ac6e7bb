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
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from django.utils.translation import gettext, gettext_noop

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


# Every GTFS-Fares v2 file and field the project reads or writes, and what it does with it (docs/fares.md
# shows this table; tests check that the import reads and the export writes nothing else).
FIELDS: dict[str, dict[str, str]] = {
    "routes.txt": {
        "route_id": "kept as given; the export writes it back (a new route: its name)",
        "agency_id": "kept for the export",
        "route_short_name": "the route's name in the rules (what a terminal is set to), kept whole",
        "route_long_name": "the name when there is no short name; kept whole for the export",
        "route_type": "the service: 3/11 bus, 0/1/2/12 metro, 4 ferry",
        "network_id": "the route's network (route set); the export writes it here again if the feed did",
    },
    "networks.txt": {
        "network_id": "a route set",
        "network_name": "the route set's name",
    },
    "route_networks.txt": {
        "network_id": "a route set",
        "route_id": "a route of it (a route is in one network)",
    },
    "stops.txt": {
        "stop_id": "a station (gates name it) when an area or a join names it",
        "stop_name": "the station's name",
        "stop_lat": "kept for the export",
        "stop_lon": "kept for the export",
    },
    "areas.txt": {"area_id": "an area (fare zone)", "area_name": "its name"},
    "stop_areas.txt": {"area_id": "the area", "stop_id": "a station in it"},
    "calendar.txt": {
        "service_id": (
            "the weekdays of a timeframe; kept as given when a timeframe names it (a new one: days-<weekdays>)"
        ),
        "monday": "weekday of the timeframe",
        "tuesday": "weekday of the timeframe",
        "wednesday": "weekday of the timeframe",
        "thursday": "weekday of the timeframe",
        "friday": "weekday of the timeframe",
        "saturday": "weekday of the timeframe",
        "sunday": "weekday of the timeframe",
        "start_date": "kept for the export as given (timeframes have no dates; a new service: 20200101)",
        "end_date": "kept for the export as given (a new service: 20991231)",
    },
    "calendar_dates.txt": {
        "service_id": "a service a timeframe names: its dated exceptions kept for the export",
        "date": "kept for the export (the rules have no dates; a service with only dates: every weekday)",
        "exception_type": "kept for the export",
    },
    "timeframes.txt": {
        "timeframe_group_id": "a timeframe",
        "start_time": "window start, to the minute",
        "end_time": "window end, to the minute (24:00:00 = end of day)",
        "service_id": "the window's weekdays (calendar.txt); none: every day",
    },
    "rider_categories.txt": {
        "rider_category_id": "mapped by id and name to elderly, student, disabled, veteran, low_income; kept",
        "rider_category_name": "read for the mapping; kept for the export",
        "is_default_fare_category": "the default category's rows are the base fare",
        "eligibility_url": "kept for the export",
    },
    "fare_media.txt": {
        "fare_media_id": "01-04 as card schemes; others by type; kept for the export",
        "fare_media_name": "kept for the export",
        "fare_media_type": "0/1 cash, paper: the base fare; 2 card: schemes 01-03; 4 app: 04",
    },
    "fare_products.txt": {
        "fare_product_id": "a fare product or leg rule id (one product on several leg rules: id::2 …)",
        "fare_product_name": "the rule's name",
        "rider_category_id": "the rule's categories",
        "fare_media_id": "the rule's card schemes (the base fare's medium kept for the export)",
        "amount": "integer fen; fractions of a fen refused; negative only for a type 1 transfer",
        "currency": "must be the tenant's (CNY) unless a rate converts it",
    },
    "fare_leg_rules.txt": {
        "leg_group_id": "kept for the export; names the transfer rules' groups",
        "network_id": "the rule's route set",
        "from_area_id": "the entry station's area",
        "to_area_id": "the exit station's area",
        "from_timeframe_group_id": "the rule's timeframe (a base fare has none)",
        "to_timeframe_group_id": "read only when equal to from_ (fares are fixed at the tap); else a note",
        "fare_product_id": "the product or leg rule",
        "rule_priority": "priority x 100 (+50 category, +10, +5 named medium); export: priority // 100",
    },
    "fare_leg_join_rules.txt": {
        "from_network_id": "with stops: one interchange inside the gates; without: a note (no rule needed)",
        "to_network_id": "as from_network_id",
        "from_stop_id": "a platform of the interchange",
        "to_stop_id": "the other platform (a free in-system transfer)",
    },
    "fare_transfer_rules.txt": {
        "from_leg_group_id": "the transfer's from service and route set",
        "to_leg_group_id": "the transfer's to service and route set",
        "transfer_count": "max transfers (-1 no limit); written only when the groups are equal",
        "duration_limit": "seconds, rounded up to minutes; empty: no limit",
        "duration_limit_type": "read as 1 (tap to tap); written 1 with a duration_limit only",
        "fare_transfer_type": "0 A+AB, 1 A+AB+B, 2 AB, as is",
        "fare_product_id": "the transfer amount AB (kept as given for the export)",
    },
}
# Fare files of GTFS the project does not read (Fares v1): a note names them on import.
UNREAD = ("fare_attributes.txt", "fare_rules.txt", "timeframes_exceptions.txt")


class GtfsError(ValueError):
    """A feed that cannot be read; the message names the file and row. Its text is English (what tests
    compare); ``translated()`` reads it in the active language (the refusal a person sees)."""

    def __init__(self, template: str, **params: Any) -> None:
        super().__init__(template % params if params else template)
        self.template, self.params = template, params

    def translated(self) -> str:
        return gettext(self.template) % self.params if self.params else gettext(self.template)


class Note(str):
    """A note on what of a feed did not map: English text (what the import returns and tests compare), which
    keeps its template and values so ``translated()`` reads it in the active language (the command prints
    that)."""

    template: str
    params: dict[str, Any]

    def __new__(cls, template: str, **params: Any) -> Note:
        note = super().__new__(cls, template % params)
        note.template, note.params = template, params
        return note

    def __reduce__(self) -> tuple[Any, ...]:
        return (_note, (self.template, self.params))

    def translated(self) -> str:
        return gettext(self.template) % self.params


def _note(template: str, params: dict[str, Any]) -> Note:
    return Note(template, **params)


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
        raise GtfsError(gettext_noop("%(path)s is neither a directory nor a zip file"), path=path)
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


def _fen(text: str, where: str, *, rate: Decimal | None = None) -> int:
    """Integer fen of an amount; converted at ``rate`` (tenant currency per feed currency) when given,
    rounded half up to the fen."""
    try:
        value = Decimal(text) * 100
    except InvalidOperation as exc:
        raise GtfsError(
            gettext_noop("%(where)s: amount %(text)r is not a number"), where=where, text=text
        ) from exc
    if rate is not None:
        return int((value * rate).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    if value != value.to_integral_value():
        raise GtfsError(
            gettext_noop("%(where)s: amount %(text)s has fractions of a fen"), where=where, text=text
        )
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


def _days_key(days: Iterable[int]) -> str:
    return "".join(str(d) for d in sorted(days))


def _hhmm(text: str, where: str) -> str:
    parts = text.split(":")
    if len(parts) < 2 or not all(p.isdigit() for p in parts):
        raise GtfsError(gettext_noop("%(where)s: time %(text)r is not HH:MM:SS"), where=where, text=text)
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


def _suffixed(base: str, taken: set[str]) -> str:
    """``base`` if free, else ``base::2``, ``base::3`` … (one GTFS product used by several leg rules);
    the export writes the feed's own id back (``gtfs.products``)."""
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}::{n}"
    taken.add(candidate)
    return candidate


def gtfs_to_rules(
    feed: Mapping[str, Any], *, currency: str = "CNY", rates: Mapping[str, Decimal] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """(rule body, notes on what did not map) from a GTFS-Fares v2 feed.

    Amounts in another currency than the tenant's are refused unless ``rates`` gives the tenant's units per
    one of that currency. The body's ``gtfs`` part keeps the feed's own ids and names the rule rows have
    no field for, so the export writes them back as they came."""
    if isinstance(feed.get(EXTENSION_FILE), Mapping):
        return dict(feed[EXTENSION_FILE]), [
            Note(gettext_noop("rules taken from %(file)s (a CityCard export)"), file=EXTENSION_FILE)
        ]
    rates = {k.upper(): Decimal(v) for k, v in (rates or {}).items()}
    notes: list[Note] = []
    for file in sorted(feed):
        if file in UNREAD:
            notes.append(
                Note(
                    gettext_noop(
                        "%(file)s is not read (GTFS-Fares v1 or not supported): its fares are not imported"
                    ),
                    file=file,
                )
            )
        elif file in FIELDS and feed[file]:
            unknown = sorted(set(feed[file][0]) - set(FIELDS[file]))
            if unknown:
                notes.append(
                    Note(
                        gettext_noop("%(file)s: column(s) %(unknown)s not read"),
                        file=file,
                        unknown=", ".join(unknown),
                    )
                )
    if not feed.get("fare_products.txt"):
        raise GtfsError(gettext_noop("fare_products.txt is missing or empty: nothing to import"))
    source: dict[str, Any] = {
        "routes": {},
        "products": {},
        "product_media": {},
        "leg_groups": {},
        "transfer_groups": {},
        "transfer_products": {},
    }
    routes = {r["route_id"]: r for r in feed.get("routes.txt", [])}
    categories = {r["rider_category_id"]: r for r in feed.get("rider_categories.txt", [])}
    default_categories = {k for k, r in categories.items() if r.get("is_default_fare_category") == "1"}
    if categories:
        source["rider_categories"] = list(feed["rider_categories.txt"])
        source["category_ids"] = {
            code: rid
            for rid, row in categories.items()
            if (code := _category(row)) and rid not in default_categories
        }
    media_rows = {r["fare_media_id"]: r for r in feed.get("fare_media.txt", [])}
    if media_rows:
        source["fare_media"] = list(feed["fare_media.txt"])

    def media_codes(media_id: str) -> list[str] | None:
        """Card schemes for a fare medium; [] = any/cash (a base fare); None = does not map."""
        if not media_id:
            return []
        if media_id in MEDIA_NAMES:
            return [media_id]
        kind = media_rows.get(media_id, {}).get("fare_media_type", "")
        return {"0": [], "1": [], "2": ["01", "02", "03"], "4": ["04"]}.get(kind)

    if media_rows:
        source["media_codes"] = {m: media_codes(m) for m in media_rows if media_codes(m) is not None}

    # routes, kept whole: the rules name a route by its short name (what a terminal is set to), else its
    # long name, else its id; the export writes the route's id and names back as they came.
    def route_name(route_id: str) -> str:
        route = routes.get(route_id, {})
        return route.get("route_short_name") or route.get("route_long_name") or route_id

    for route_id, route in routes.items():
        name = route_name(route_id)
        if name in source["routes"]:
            notes.append(
                Note(
                    gettext_noop("routes.txt %(id)s: name %(name)r is also route %(route)s"),
                    id=route_id,
                    name=name,
                    route=source["routes"][name]["route_id"],
                )
            )
            continue
        source["routes"][name] = {
            k: route[k]
            for k in ("route_id", "agency_id", "route_short_name", "route_long_name", "route_type")
            if route.get(k)
        }

    # networks -> route sets: route_networks.txt, or network_id in routes.txt (the spec allows either)
    by_network: dict[str, set[str]] = defaultdict(set)
    services: dict[str, set[str]] = defaultdict(set)
    memberships = [
        (r.get("network_id", ""), r.get("route_id", ""), "route_networks.txt", i)
        for i, r in enumerate(feed.get("route_networks.txt", []))
    ]
    in_routes = [
        (r.get("network_id", ""), rid, "routes.txt", i)
        for i, (rid, r) in enumerate(routes.items())
        if r.get("network_id")
    ]
    if in_routes:
        source["network_in_routes"] = True
    for network, route_id, file, i in memberships + in_routes:
        if not route_id or not network:
            raise GtfsError(
                gettext_noop("%(file)s row %(row)d: network_id and route_id are both needed"),
                file=file,
                row=i + 2,
            )
        by_network[network].add(route_name(route_id))
        services[network].add(ROUTE_TYPES.get(routes.get(route_id, {}).get("route_type", "3"), "bus"))
    route_sets: dict[str, Any] = {}
    for network, names in sorted(by_network.items()):
        explicit, ranges = compress_routes(names)
        service = next(iter(services[network])) if len(services[network]) == 1 else None
        route_sets[network] = {"service": service, "routes": explicit, "ranges": ranges, "except": []}
    for row in feed.get("networks.txt", []):
        if row["network_id"] in route_sets:
            route_sets[row["network_id"]]["name"] = row.get("network_name", "")

    # stations and areas: the stops named by stop_areas.txt or a join, with their names and positions
    areas: dict[str, dict[str, Any]] = {}
    for row in feed.get("areas.txt", []):
        areas[row["area_id"]] = {"name": row.get("area_name", ""), "stops": []}
    for i, row in enumerate(feed.get("stop_areas.txt", [])):
        if row.get("area_id") not in areas:
            raise GtfsError(
                gettext_noop("stop_areas.txt row %(row)d: area %(area)r is not in areas.txt"),
                row=i + 2,
                area=row.get("area_id"),
            )
        areas[row["area_id"]]["stops"].append(row["stop_id"])
    joins = []
    for row in feed.get("fare_leg_join_rules.txt", []):
        if row.get("from_stop_id") and row.get("to_stop_id"):
            joins.append({"from_stop": row["from_stop_id"], "to_stop": row["to_stop_id"]})
        else:
            notes.append(
                Note(
                    gettext_noop(
                        "fare_leg_join_rules.txt %(source)s->%(target)s: a join without stops needs no rule here"
                        " (a gated journey is priced entry to exit, transfers inside)"
                    ),
                    source=row.get("from_network_id"),
                    target=row.get("to_network_id"),
                )
            )
    named = {s for a in areas.values() for s in a["stops"]} | {
        j[k] for j in joins for k in ("from_stop", "to_stop")
    }
    stops_rows = {r["stop_id"]: r for r in feed.get("stops.txt", [])}
    stops = []
    for sid in sorted(named):
        row = stops_rows.get(sid, {})
        stop: dict[str, Any] = {"id": sid, "name": row.get("stop_name", "")}
        if row.get("stop_lat") and row.get("stop_lon"):
            stop.update(
                lat=row["stop_lat"], lon=row["stop_lon"]
            )  # as given (a signed document has no floats)
        stops.append(stop)
    for area_id, area in list(areas.items()):
        if not area["stops"]:
            notes.append(
                Note(gettext_noop("areas.txt %(id)s: no station in stop_areas.txt; area skipped"), id=area_id)
            )
            del areas[area_id]

    # timeframes (weekdays from calendar.txt)
    calendar = {
        r["service_id"]: [i + 1 for i, day in enumerate(_DAY_NAMES) if r.get(day) == "1"]
        for r in feed.get("calendar.txt", [])
    }
    # The services timeframes name are kept as the feed gave them (ids, dates, exception dates) for the
    # export; the rules take only their weekdays.
    named = {row["service_id"] for row in feed.get("timeframes.txt", []) if row.get("service_id")}
    cal_rows = {r["service_id"]: dict(r) for r in feed.get("calendar.txt", []) if r["service_id"] in named}
    date_rows = [dict(r) for r in feed.get("calendar_dates.txt", []) if r.get("service_id") in named]
    if cal_rows:
        source["calendar"] = cal_rows
    if date_rows:
        source["calendar_dates"] = date_rows
        for sid in sorted({r["service_id"] for r in date_rows} - set(cal_rows)):
            notes.append(
                Note(
                    gettext_noop(
                        "calendar_dates.txt: service %(sid)s has only dated exceptions; its timeframes apply"
                        " every weekday (the dates are kept for the export)"
                    ),
                    sid=sid,
                )
            )
    timeframes: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for i, row in enumerate(feed.get("timeframes.txt", [])):
        where = f"timeframes.txt row {i + 2}"
        days = calendar.get(row.get("service_id", ""), [1, 2, 3, 4, 5, 6, 7])
        if row.get("service_id"):
            services = source.setdefault("timeframe_services", {}).setdefault(row["timeframe_group_id"], {})
            services[_days_key(days)] = row["service_id"]
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

    def amount_of(prow: Mapping[str, str], where: str) -> int:
        given = (prow.get("currency") or currency).upper()
        if given == currency:
            return _fen(prow.get("amount", "0"), where)
        if given not in rates:
            raise GtfsError(
                gettext_noop(
                    "%(where)s: currency %(given)s is not the tenant's (%(currency)s); the fares would be wrong. "
                    "Import with a rate to convert (e.g. --rate %(given)s=7.10, %(currency)s per %(given)s)"
                ),
                where=where,
                given=given,
                currency=currency,
            )
        fen = _fen(prow.get("amount", "0"), where, rate=rates[given])
        notes.append(
            Note(
                gettext_noop(
                    "%(where)s: %(amount)s %(given)s converted at %(rate)s -> %(fen)s fen %(currency)s"
                ),
                where=where,
                amount=prow.get("amount"),
                given=given,
                rate=rates[given],
                fen=fen,
                currency=currency,
            )
        )
        return fen

    body_products: list[dict[str, Any]] = []
    legs: list[dict[str, Any]] = []
    leg_groups: dict[str, tuple[str | None, str | None]] = {}
    taken: set[str] = set()
    for i, row in enumerate(feed.get("fare_leg_rules.txt", [])):
        where = f"fare_leg_rules.txt row {i + 2}"
        network = row.get("network_id") or None
        if network and network not in route_sets:
            raise GtfsError(
                gettext_noop(
                    "%(where)s: network %(network)r has no routes (in route_networks.txt or routes.txt network_id)"
                ),
                where=where,
                network=network,
            )
        service = (route_sets[network]["service"] if network else None) or (
            "metro" if (row.get("from_area_id") or row.get("to_area_id")) else "bus"
        )
        area_pair = {}
        for key in ("from_area", "to_area"):
            area = row.get(f"{key}_id") or None
            if area and area not in areas:
                raise GtfsError(
                    gettext_noop(
                        "%(where)s: %(key)s_id %(area)r is not in areas.txt (with stations in stop_areas.txt)"
                    ),
                    where=where,
                    key=key,
                    area=area,
                )
            if area:
                area_pair[key] = area
        if row.get("to_timeframe_group_id") and row.get("to_timeframe_group_id") != row.get(
            "from_timeframe_group_id"
        ):
            notes.append(
                Note(
                    gettext_noop("%(where)s: to_timeframe_group_id ignored (fares are fixed at the tap)"),
                    where=where,
                )
            )
        timeframe = row.get("from_timeframe_group_id") or None
        priority = int(row.get("rule_priority") or 0) * 100
        product_id = row["fare_product_id"]
        if product_id not in products:
            raise GtfsError(
                gettext_noop("%(where)s: fare_product_id %(product)r is not in fare_products.txt"),
                where=where,
                product=product_id,
            )
        group_id = row.get("leg_group_id", "")
        if group_id:
            known = leg_groups.get(group_id)
            # a group over several networks: any route of its service (or any service)
            leg_groups[group_id] = (
                (service, network)
                if known is None or known == (service, network)
                else (service if known[0] == service else None, None)
            )
        groups: dict[str | None, dict[str, Any]] = {}
        for prow in products[product_id]:
            pwhere = f"fare_products.txt {product_id}"
            amount = amount_of(prow, pwhere)
            rider = prow.get("rider_category_id", "")
            category = (
                None
                if (not rider or rider in default_categories)
                else _category(categories.get(rider, {"rider_category_id": rider}))
            )
            if rider and rider not in default_categories and category is None:
                notes.append(
                    Note(
                        gettext_noop(
                            "%(where)s: rider category %(rider)r does not map to a category; row skipped"
                        ),
                        where=pwhere,
                        rider=rider,
                    )
                )
                continue
            media = media_codes(prow.get("fare_media_id", ""))
            if media is None:
                notes.append(
                    Note(
                        gettext_noop("%(where)s: fare medium %(id)r does not map; row skipped"),
                        where=pwhere,
                        id=prow.get("fare_media_id"),
                    )
                )
                continue
            if category is None and not media:
                if timeframe:
                    notes.append(
                        Note(
                            gettext_noop(
                                "%(where)s: a base fare cannot depend on a timeframe; timeframe ignored"
                            ),
                            where=where,
                        )
                    )
                pid = _suffixed(product_id, taken)
                if pid != product_id:
                    source["products"][pid] = product_id
                if group_id:
                    source["leg_groups"][pid] = group_id
                if prow.get("fare_media_id"):
                    source["product_media"][pid] = prow["fare_media_id"]
                body_products.append(
                    {
                        "id": pid,
                        "name": prow.get("fare_product_name", ""),
                        "service": service,
                        "route_set": network,
                        "amount_fen": amount,
                        "priority": priority,
                        **area_pair,
                    }
                )
                continue
            group = groups.setdefault(category, {"amount": amount, "media": set()})
            if group["amount"] != amount:
                notes.append(
                    Note(
                        gettext_noop("%(where)s: %(category)s rows with different amounts; kept %(amount)s"),
                        where=pwhere,
                        category=category or "default",
                        amount=group["amount"],
                    )
                )
            group["media"].update(media)
        for category, group in sorted(groups.items(), key=lambda g: g[0] or ""):
            lid = _suffixed(product_id if len(groups) == 1 else f"{product_id}.{category or 'all'}", taken)
            if lid != product_id:
                source["products"][lid] = product_id
            if group_id:
                source["leg_groups"][lid] = group_id
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
                    **area_pair,
                }
            )

    transfers = []
    for i, row in enumerate(feed.get("fare_transfer_rules.txt", [])):
        where = f"fare_transfer_rules.txt row {i + 2}"
        src = leg_groups.get(row.get("from_leg_group_id", ""), (None, None))
        dst = leg_groups.get(row.get("to_leg_group_id", ""), (None, None))
        amount, name = 0, ""
        if row.get("fare_product_id"):
            rows = products.get(row["fare_product_id"])
            if not rows:
                raise GtfsError(
                    gettext_noop("%(where)s: fare_product_id %(product)r is not in fare_products.txt"),
                    where=where,
                    product=row["fare_product_id"],
                )
            amount = amount_of(rows[0], f"fare_products.txt {row['fare_product_id']}")
            name = rows[0].get("fare_product_name", "")
        limit = row.get("duration_limit")
        tid = f"{src[1] or src[0] or 'any'}-{dst[1] or dst[0] or 'any'}"
        while tid in {t["id"] for t in transfers}:
            tid += "-2"
        count = row.get("transfer_count")
        source["transfer_groups"][tid] = [row.get("from_leg_group_id", ""), row.get("to_leg_group_id", "")]
        if row.get("fare_product_id"):
            source["transfer_products"][tid] = row["fare_product_id"]
        transfers.append(
            {
                "id": tid,
                "name": name,
                "from_service": src[0],
                "from_route_set": src[1],
                "to_service": dst[0],
                "to_route_set": dst[1],
                # an empty duration_limit is no limit; seconds round up to whole minutes
                "within_minutes": max(1, -(-int(limit) // 60)) if limit else None,
                "max_transfers": int(count) if count else 1,
                "transfer_type": int(row.get("fare_transfer_type") or 0),
                "amount_fen": amount,
                "measure": "previous_tap",
                "priority": 0,
            }
        )
        if transfers[-1]["transfer_type"] != 1 and amount < 0:
            raise GtfsError(
                gettext_noop(
                    "%(where)s: a negative transfer amount only makes sense for fare_transfer_type 1"
                ),
                where=where,
            )
    # Canonical order, so a feed read twice (or exported and read back) gives equal bodies.
    body: dict[str, Any] = {
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
    if stops:
        body["stops"] = stops
    if areas:
        body["areas"] = dict(sorted(areas.items()))
    if joins:
        body["joins"] = joins
    body["gtfs"] = {k: v for k, v in source.items() if v}
    return body, notes


# --- export ----------------------------------------------------------------------------------------------


def _base_for(body: Mapping[str, Any], rule: Mapping[str, Any]) -> int | None:
    """The base fare a percent rule discounts (the top fixed-amount product of its service/route set)."""
    candidates = [
        p
        for p in body["fare_products"]
        if "amount_fen" in p
        and p["service"] == (rule.get("service") or p["service"])
        and (rule.get("route_set") is None or p.get("route_set") in (None, rule.get("route_set")))
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda p: (p.get("priority", 0), p.get("route_set") is not None))["amount_fen"]


def _seconds(text: str) -> str:
    return f"{text}:00"


def rules_to_gtfs(body: Mapping[str, Any], *, source: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """GTFS-Fares v2 files for a rule body (only the files it has something for), plus the CityCard
    extension with the whole body. ``source`` (the last import's own ids and names) puts route ids, fare
    media, rider categories and shared product ids back as the feed had them."""
    source = source or {}
    feed: dict[str, Any] = {}
    route_sets = body.get("route_sets", {})
    given_routes: Mapping[str, Any] = source.get("routes", {})
    product_ids: Mapping[str, str] = source.get("products", {})

    # fare media: as imported, else the card schemes by code
    media_rows = list(source.get("fare_media") or [])
    media_codes: Mapping[str, list[str]] = source.get("media_codes", {})
    used_media: set[str] = set()

    def media_ids(codes: list[str]) -> list[str]:
        if not codes:
            return [""]
        if media_codes:
            chosen = [m for m, c in media_codes.items() if c and set(c) <= set(codes)]
            if {c for m in chosen for c in media_codes[m]} == set(codes):
                used_media.update(chosen)
                return sorted(chosen)
        used_media.update(codes)
        return sorted(codes)

    # routes: ids and names as imported; a route is in one network (the first route set naming it)
    names_by_service: dict[str, set[str]] = defaultdict(set)
    for rs in route_sets.values():
        for name in _members(rs):
            names_by_service[rs.get("service") or "bus"].add(name)
    clash = {
        n
        for s, names in names_by_service.items()
        for n in names
        if any(n in other for t, other in names_by_service.items() if t != s)
    }
    routes: dict[str, dict[str, str]] = {}
    route_networks = []
    for rid, rs in sorted(route_sets.items()):
        service = rs.get("service") or "bus"
        for name in _members(rs):
            given = given_routes.get(name, {})
            route_id = given.get("route_id") or (f"{service}-{name}" if name in clash else name)
            if route_id in routes:
                continue  # GTFS: one network per route
            routes[route_id] = {
                "route_id": route_id,
                "agency_id": given.get("agency_id", ""),
                "route_short_name": given.get("route_short_name", name if not given else ""),
                "route_long_name": given.get("route_long_name", ""),
                "route_type": given.get("route_type") or SERVICE_ROUTE_TYPE.get(service, "3"),
            }
            if source.get("network_in_routes"):
                routes[route_id]["network_id"] = rid
            else:
                route_networks.append({"network_id": rid, "route_id": route_id})
    if routes:
        feed["routes.txt"] = list(routes.values())
    if route_networks:  # networks.txt is forbidden when routes.txt names the networks
        feed["networks.txt"] = [
            {"network_id": rid, "network_name": rs.get("name", "")} for rid, rs in sorted(route_sets.items())
        ]
        feed["route_networks.txt"] = route_networks

    # stations and areas
    if body.get("stops"):
        feed["stops.txt"] = [
            {
                "stop_id": s["id"],
                "stop_name": s.get("name", ""),
                "stop_lat": s.get("lat", ""),
                "stop_lon": s.get("lon", ""),
            }
            for s in body["stops"]
        ]
    if body.get("areas"):
        feed["areas.txt"] = [{"area_id": a, "area_name": v.get("name", "")} for a, v in body["areas"].items()]
        feed["stop_areas.txt"] = [
            {"area_id": a, "stop_id": s} for a, v in body["areas"].items() for s in v.get("stops", [])
        ]
    if body.get("joins"):
        metro = sorted(r for r, rs in route_sets.items() if rs.get("service") == "metro")
        if metro:  # a join names its networks; without a metro network the extension file keeps it
            feed["fare_leg_join_rules.txt"] = [
                {
                    "from_network_id": metro[0],
                    "to_network_id": metro[0],
                    "from_stop_id": j["from_stop"],
                    "to_stop_id": j["to_stop"],
                }
                for j in body["joins"]
            ]

    timeframes, calendar = [], {}
    given_calendar: Mapping[str, Mapping[str, str]] = source.get("calendar", {})
    given_dates: list[Mapping[str, str]] = source.get("calendar_dates", [])
    given_services: Mapping[str, Mapping[str, str]] = source.get("timeframe_services", {})
    dated = {r["service_id"] for r in given_dates}
    for tid, windows in sorted(body.get("timeframes", {}).items()):
        for w in windows:
            days = w.get("days", [1, 2, 3, 4, 5, 6, 7])
            # the service id the import had for these weekdays, with its calendar as given
            service_id = given_services.get(tid, {}).get(_days_key(days))
            if service_id and (service_id in given_calendar or service_id in dated):
                if service_id in given_calendar:
                    calendar[service_id] = {
                        k: v for k, v in given_calendar[service_id].items() if k in FIELDS["calendar.txt"]
                    }
            else:
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
                    "start_time": _seconds(w["start"]),
                    "end_time": _seconds(w["end"]),
                    "service_id": service_id,
                }
            )
    if timeframes:
        feed["timeframes.txt"] = timeframes
        if calendar:
            feed["calendar.txt"] = list(calendar.values())
        used = {t["service_id"] for t in timeframes}
        dates = [
            {k: v for k, v in r.items() if k in FIELDS["calendar_dates.txt"]}
            for r in given_dates
            if r["service_id"] in used
        ]
        if dates:
            feed["calendar_dates.txt"] = dates

    products: list[dict[str, str]] = []
    written: set[tuple[str, str, str]] = set()
    leg_rules: list[dict[str, str]] = []
    group_service: dict[str, str] = {}

    def product_row(pid: str, name: str, category: str, media: str, fen: int) -> None:
        key = (product_ids.get(pid, pid), category, media)
        if key in written:
            return
        written.add(key)
        products.append(
            {
                "fare_product_id": key[0],
                "fare_product_name": name,
                "rider_category_id": category,
                "fare_media_id": media,
                "amount": _yuan(fen),
                "currency": "CNY",
            }
        )

    given_groups: Mapping[str, str] = source.get("leg_groups", {})
    category_ids: Mapping[str, str] = source.get("category_ids", {})

    def leg_row(group: str, service: str, rule: Mapping[str, Any], pid: str, timeframe: str = "") -> None:
        group = given_groups.get(rule["id"], group)
        group_service[group] = service
        leg_rules.append(
            {
                "leg_group_id": group,
                "network_id": rule.get("route_set") or "",
                "from_area_id": rule.get("from_area") or "",
                "to_area_id": rule.get("to_area") or "",
                "from_timeframe_group_id": timeframe,
                "to_timeframe_group_id": timeframe,
                "fare_product_id": product_ids.get(pid, pid),
                "rule_priority": str(rule.get("priority", 0) // 100),
            }
        )

    def group_of(service: str | None, route_set: str | None) -> str:
        return route_set or f"all-{service or 'any'}"

    for p in body.get("fare_products", []):
        if p.get("fare_table"):
            continue  # a distance table is no GTFS product: the extension file keeps it
        product_row(
            p["id"], p.get("name", ""), "", source.get("product_media", {}).get(p["id"], ""), p["amount_fen"]
        )
        leg_row(group_of(p["service"], p.get("route_set")), p["service"], p, p["id"])
    used_categories: set[str] = set()
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
        for code in r.get("categories") or [""]:
            category = category_ids.get(code, code)
            used_categories.add(category)
            for media in media_ids(list(r.get("media") or [])):
                product_row(r["id"], r.get("name", ""), category, media, amount)
        leg_row(
            group_of(r.get("service"), r.get("route_set")),
            r.get("service") or "bus",
            r,
            r["id"],
            r.get("timeframe") or "",
        )
    transfers = []
    for t in body.get("transfer_rules", []):
        product_id = source.get("transfer_products", {}).get(t["id"], "")
        if t.get("amount_fen") or product_id:  # a transfer that costs nothing needs no product, unless given
            product_id = product_id or f"transfer-{t['id']}"
            product_row(product_id, t.get("name", ""), "", "", t["amount_fen"])

        def groups(service: str | None, route_set: str | None) -> list[str]:
            wanted = group_of(service, route_set)
            if wanted in group_service:
                return [wanted]
            # a group no leg rule defines: the groups of that service
            return sorted(g for g, s in group_service.items() if service is None or s == service)

        given = source.get("transfer_groups", {}).get(t["id"])
        if given and all(g in group_service for g in given):
            pairs = [tuple(given)]
        else:
            pairs = [
                (src, dst)
                for src in groups(t.get("from_service"), t.get("from_route_set"))
                for dst in groups(t.get("to_service"), t.get("to_route_set"))
            ]
        for src, dst in pairs:
            row = {
                "from_leg_group_id": src,
                "to_leg_group_id": dst,
                "transfer_count": "",
                "duration_limit": "",
                "duration_limit_type": "",
                "fare_transfer_type": str(t.get("transfer_type", 0)),
                "fare_product_id": product_id,
            }
            if src == dst:  # required when the groups are equal, forbidden otherwise
                row["transfer_count"] = str(t.get("max_transfers", 1))
            if t.get("within_minutes") is not None:
                row["duration_limit"] = str(t["within_minutes"] * 60)
                row["duration_limit_type"] = "1"  # departure tap to departure tap
            transfers.append(row)
    if products:
        feed["fare_products.txt"] = products
    if leg_rules:
        feed["fare_leg_rules.txt"] = leg_rules
    if transfers:
        feed["fare_transfer_rules.txt"] = transfers
    categories = {c for c in used_categories if c}
    if categories:  # in the feed's order, with its default category; then the project's own codes
        given = list(source.get("rider_categories", []))
        feed["rider_categories.txt"] = [
            r
            for r in given
            if r["rider_category_id"] in categories or r.get("is_default_fare_category") == "1"
        ] + [
            {"rider_category_id": c, "rider_category_name": c, "is_default_fare_category": "0"}
            for c in sorted(categories - {r["rider_category_id"] for r in given})
        ]
    if used_media or source.get("product_media"):
        wanted = used_media | set(source.get("product_media", {}).values())
        given_ids = {r["fare_media_id"] for r in media_rows}
        feed["fare_media.txt"] = [r for r in media_rows if r["fare_media_id"] in wanted] + [
            {
                "fare_media_id": m,
                "fare_media_name": MEDIA_NAMES.get(m, m),
                "fare_media_type": "4" if m == "04" else "2",
            }
            for m in sorted(wanted - given_ids)
        ]
    feed[EXTENSION_FILE] = {k: v for k, v in body.items() if k not in {"home_divisions", "format"}}
    return feed
