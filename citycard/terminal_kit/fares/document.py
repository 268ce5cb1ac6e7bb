"""The fare rule document (票价规则文档): parsing, validation and compilation into lookup structures.

A rule document is the signed payload a tenant publishes (kind ``fare_rules``); docs/fares.md describes
every field. :func:`compile_document` checks the whole document and either returns a
:class:`CompiledRules` ready for :mod:`citycard.terminal_kit.fares.engine` or raises
:class:`RuleDocumentError` listing *every* problem (a city administrator fixes them all in one go).
Both terminals and the back office call it, so a document a terminal accepts is exactly one the back
office published.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from citycard.terminal_kit.i18n import N_, said, translated
from citycard.terminal_kit.money import bps_of

FORMAT = 1
SERVICES = ("bus", "metro", "ferry", "taxi", "bike", "park", "library", "parking", "other")
CATEGORIES = ("elderly", "student", "disabled", "veteran", "low_income")
MEDIA = ("01", "02", "03", "04")  # card schemes: main card, new-resident, city pass, e-citizen code
RIDERS = ("any", "local", "visitor")
KINDS = ("percent", "fixed", "free", "minus")
PERIODS = ("day", "month")
POLICIES = ("host_rules", "home_category", "no_concession")
TRANSFER_TYPES = (0, 1, 2)  # GTFS-Fares v2 fare_transfer_type: 0 = A+AB, 1 = A+AB+B, 2 = AB
MEASURES = ("previous_tap", "first_tap")
# What a fare table counts: kilometres or stations travelled, or the origin-destination pair itself
# (站间票价表: a fare for each pair of stations, as some metros publish a station x station matrix).
DISTANCES = ("km", "stations", "od")
MAX_ROUTE_NUMBER = 99_999
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_HHMM = re.compile(r"^(\d{2}):(\d{2})$")


class RuleDocumentError(ValueError):
    """A rule document that cannot be published or loaded; ``problems`` names each thing wrong."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems  # English (each a Said: ``translated_problems`` reads them in a language)
        super().__init__("; ".join(problems))

    def translated_problems(self, language: str | None = None) -> list[str]:
        """Each problem in ``language`` (``zh-hans``, ``en``; the kit's active language when None)."""
        return [translated(p, language) for p in self.problems]

    def translated(self, language: str | None = None) -> str:
        """What ``reason(exc)`` says: every problem, in ``language``."""
        return "; ".join(self.translated_problems(language))


@dataclass(frozen=True)
class RouteSet:
    id: str
    service: str | None
    routes: frozenset[str]
    ranges: tuple[tuple[int, int], ...]
    excluded: frozenset[str]

    def contains(self, route: str) -> bool:
        if route in self.excluded:
            return False
        if route in self.routes:
            return True
        if self.ranges and route.isdigit():
            number = int(route)
            for low, high in self.ranges:
                if low <= number <= high:
                    return True
        return False

    def members(self) -> set[str]:
        """Every route the set matches (ranges are bounded, so this is finite)."""
        found = set(self.routes)
        for low, high in self.ranges:
            found.update(str(n) for n in range(low, high + 1))
        return found - self.excluded


@dataclass(frozen=True)
class Timeframe:
    id: str
    # per ISO weekday (index 1..7; 0 unused) the [start, end) minute windows
    windows: tuple[tuple[tuple[int, int], ...], ...]

    def contains(self, weekday: int, minute: int) -> bool:
        return any(start <= minute < end for start, end in self.windows[weekday])

    def overlaps(self, other: Timeframe) -> bool:
        for day in range(1, 8):
            for a0, a1 in self.windows[day]:
                for b0, b1 in other.windows[day]:
                    if a0 < b1 and b0 < a1:
                        return True
        return False


@dataclass(frozen=True)
class Area:
    """A fare zone (GTFS ``areas`` + ``stop_areas``): a set of stations priced alike."""

    id: str
    name: str
    stops: frozenset[str]


@dataclass(frozen=True)
class Line:
    """A line of stations in order, each with its distance from the line's first station in metres."""

    id: str
    service: str
    stops: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class FareTable:
    """A distance fare table (里程计价表) as Chinese metros publish it: rows of (up to N km or N stations,
    fare), ascending; beyond the last row ``beyond_add_fen`` for every ``beyond_every`` km or stations
    started (0: the last row's fare is the maximum)."""

    id: str
    name: str
    measure: str
    rows: tuple[tuple[int, int], ...]
    beyond_every: int
    beyond_add_fen: int
    # measure "od": (from station, to station) -> fen; a pair given one way is read both ways
    cells: dict[tuple[str, str], int] = field(default_factory=dict)

    def price_pair(self, origin: str, destination: str) -> tuple[int, str] | None:
        """(fare, the table cell) of an origin-destination table, or None for a pair it has no fare for."""
        fen = self.cells.get((origin, destination))
        if fen is None:
            fen = self.cells.get((destination, origin))
        if fen is None:
            return None
        return fen, f"table {self.id}: {origin} -> {destination} -> {fen} fen"

    def price(self, distance: int) -> tuple[int, str]:
        """(fare, the table cell) for a distance in metres (``km``) or stations (``stations``)."""
        scale = 1000 if self.measure == "km" else 1
        shown = f"{distance / 1000:g} km" if self.measure == "km" else f"{distance} stations"
        for up_to, fen in self.rows:
            if distance <= up_to * scale:
                return fen, f"table {self.id}: {shown}, row <= {up_to} {self.measure} -> {fen} fen"
        last, fen = self.rows[-1]
        if not self.beyond_every:
            return fen, f"table {self.id}: {shown}, beyond the last row ({last} {self.measure}) -> {fen} fen"
        step = self.beyond_every * scale
        steps = -(-(distance - last * scale) // step)
        fare = fen + steps * self.beyond_add_fen
        return fare, (
            f"table {self.id}: {shown}, row > {last} {self.measure}: {fen} + {steps} x "
            f"{self.beyond_add_fen} per {self.beyond_every} {self.measure} -> {fare} fen"
        )

    @property
    def minimum_fen(self) -> int:
        return self.rows[0][1]


@dataclass(frozen=True)
class GateRules:
    """Tap-in/tap-out rules of a gated service (进出站规则): what the entry debits, and what an incomplete
    journey costs."""

    service: str
    entry_fen: int  # debited at the entry gate (a deposit, taken off the fare at the exit); usually 0
    time_limit_minutes: int  # an entry older than this is an incomplete journey (超时)
    incomplete_fen: int  # no exit within the limit: charged at the next entry (or an exit too late)
    no_entry_fen: int  # an exit without an entry (无进站记录): the penalty
    same_station_minutes: int  # exit where the rider entered within this many minutes ...
    same_station_fen: int  # ... costs this (the minimum fare)


@dataclass(frozen=True)
class Product:
    id: str
    name: str
    service: str
    route_set: RouteSet | None
    amount_fen: int
    priority: int
    valid_from: dt.date | None
    valid_to: dt.date | None
    from_area: Area | None = None  # GTFS fare_leg_rules.from_area_id: the entry station's area
    to_area: Area | None = None  # to_area_id: the exit station's area
    table: FareTable | None = None  # the fare by distance between entry and exit, instead of amount_fen

    @property
    def needs_stations(self) -> bool:
        return self.from_area is not None or self.to_area is not None or self.table is not None


@dataclass(frozen=True)
class Quota:
    id: str
    name: str
    period: str
    rides: int


@dataclass(frozen=True)
class LegRule:
    id: str
    name: str
    service: str | None
    route_set: RouteSet | None
    timeframe: Timeframe | None
    categories: frozenset[str]
    media: frozenset[str]
    passes: frozenset[str]
    riders: str
    kind: str
    value: int
    above_base: bool
    priority: int
    valid_from: dt.date | None
    valid_to: dt.date | None
    quota: Quota | None
    from_area: Area | None = None
    to_area: Area | None = None

    def price(self, base: int) -> int:
        """The leg's fare from the base fare (a percentage is in basis points, rounded by ``bps_of``)."""
        if self.kind == "percent":
            fare = bps_of(base, self.value)
        elif self.kind == "fixed":
            fare = self.value
        elif self.kind == "minus":
            fare = max(0, base - self.value)
        else:
            fare = 0
        return fare if self.above_base else min(fare, base)

    def describe(self) -> str:
        if self.kind == "percent":
            return f"{self.value / 100:g}% of base"
        if self.kind == "fixed":
            return f"fixed {self.value} fen"
        if self.kind == "minus":
            return f"{self.value} fen off"
        return "free"


@dataclass(frozen=True)
class TransferRule:
    id: str
    name: str
    from_service: str | None
    from_route_set: RouteSet | None
    to_service: str | None
    to_route_set: RouteSet | None
    within_minutes: int | None  # None: no time limit (GTFS: an empty duration_limit)
    max_transfers: int  # -1: unlimited (GTFS transfer_count)
    transfer_type: int
    amount_fen: int  # AB: the transfer product's amount (may be negative for type 1: a discount)
    measure: str
    priority: int


@dataclass(frozen=True)
class Cap:
    id: str
    name: str
    period: str
    amount_fen: int
    service: str | None
    categories: frozenset[str]
    media: frozenset[str]


@dataclass(frozen=True)
class VisitorPolicy:
    default: str
    by_division: Mapping[str, str]
    # (network, member divisions, policy, the agreement version that set it or "")
    by_network: tuple[tuple[str, frozenset[str], str, str], ...]

    def for_issuer(self, division: str) -> tuple[str, str]:
        """(policy, why) for a card issued by ``division``: tenant entry first, then network (naming the
        roaming agreement and version the policy comes from), then default."""
        policy = self.by_division.get(division)
        if policy is not None:
            return policy, f"home tenant {division}"
        for network, members, net_policy, agreement in self.by_network:
            if division in members:
                return (
                    net_policy,
                    f"network {network}, agreement {agreement}" if agreement else f"network {network}",
                )
        return self.default, "default"


@dataclass
class CompiledRules:
    tenant: str
    version: int
    effective_from: dt.datetime | None
    home_divisions: frozenset[str]
    route_sets: dict[str, RouteSet]
    timeframes: dict[str, Timeframe]
    products: tuple[Product, ...]
    leg_rules: tuple[LegRule, ...]
    transfer_rules: tuple[TransferRule, ...]
    caps: tuple[Cap, ...]
    quotas: dict[str, Quota]
    visitors: VisitorPolicy
    payload: dict[str, Any] = field(repr=False, default_factory=dict)
    stops: dict[str, str] = field(default_factory=dict)  # station id -> name
    areas: dict[str, Area] = field(default_factory=dict)
    lines: dict[str, Line] = field(default_factory=dict)
    # station -> (neighbour, metres, stations): the lines' consecutive stations and the joins (0, 0)
    graph: dict[str, tuple[tuple[str, int, int], ...]] = field(default_factory=dict)
    tables: dict[str, FareTable] = field(default_factory=dict)
    gates: dict[str, GateRules] = field(default_factory=dict)  # by service


# --- parsing helpers -----------------------------------------------------------------------------------


class _Reader:
    """Collects problems instead of stopping at the first one."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, where: str, message: str) -> None:
        # English as ever; a Said remembers where and what, to be read in the person's language.
        self.problems.append(said(N_("%(where)s: %(message)s"), where=where, message=message))

    def obj(self, value: Any, where: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(where, said(N_("must be an object")))
            return {}
        return value

    def items(self, data: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
        value = data.get(key, [])
        if not isinstance(value, list):
            self.fail(key, said(N_("must be a list")))
            return []
        return [self.obj(item, f"{key}[{i}]") for i, item in enumerate(value)]

    def ident(self, item: Mapping[str, Any], where: str, seen: set[str]) -> str:
        value = item.get("id")
        if not isinstance(value, str) or not _ID.match(value):
            self.fail(
                where,
                said(N_("id %(value)r must be 1-64 letters, digits, '_', '.', ':' or '-'"), value=value),
            )
            return f"?{where}"
        if value in seen:
            self.fail(where, said(N_("id %(value)r is used twice"), value=value))
        seen.add(value)
        return value

    def integer(
        self,
        item: Mapping[str, Any],
        key: str,
        where: str,
        *,
        default: int | None = None,
        minimum: int | None = 0,
    ) -> int:
        value = item.get(key, default)
        if type(value) is not int:
            self.fail(
                where,
                said(
                    N_("%(key)s must be an integer (money is integer fen), not %(value)r"),
                    key=key,
                    value=value,
                ),
            )
            return 0
        if minimum is not None and value < minimum:
            noun = said(N_("fare")) if key.endswith("_fen") else key
            self.fail(
                where,
                said(
                    N_(
                        "%(key)s %(value)s is negative or too small (a %(noun)s below %(minimum)s is refused)"
                    ),
                    key=key,
                    value=value,
                    noun=noun,
                    minimum=minimum,
                ),
            )
        return value

    def choice(
        self, item: Mapping[str, Any], key: str, where: str, allowed: Iterable[Any], default: Any
    ) -> Any:
        value = item.get(key, default)
        allowed = tuple(allowed)
        if value not in allowed:
            self.fail(
                where,
                said(
                    N_("%(key)s %(value)r is not one of %(allowed)s"),
                    key=key,
                    value=value,
                    allowed=", ".join(map(str, allowed)),
                ),
            )
            return default
        return value

    def codes(self, item: Mapping[str, Any], key: str, where: str, allowed: Iterable[str]) -> frozenset[str]:
        value = item.get(key, [])
        if value is None:
            return frozenset()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(where, said(N_("%(key)s must be a list of codes"), key=key))
            return frozenset()
        allowed = tuple(allowed)
        unknown = [v for v in value if v not in allowed]
        if unknown:
            self.fail(
                where,
                said(
                    N_("%(key)s %(unknown)s unknown (known: %(known)s)"),
                    key=key,
                    unknown=", ".join(unknown),
                    known=", ".join(allowed),
                ),
            )
        return frozenset(value)

    def date(self, item: Mapping[str, Any], key: str, where: str) -> dt.date | None:
        value = item.get(key)
        if value in (None, ""):
            return None
        try:
            return dt.date.fromisoformat(value)
        except (TypeError, ValueError):
            self.fail(where, said(N_("%(key)s %(value)r must be a date YYYY-MM-DD"), key=key, value=value))
            return None

    def ref(self, item: Mapping[str, Any], key: str, where: str, table: Mapping[str, Any]) -> Any:
        value = item.get(key)
        if value in (None, ""):
            return None
        if value not in table:
            self.fail(where, said(N_("%(key)s %(value)r is not defined"), key=key, value=value))
            return None
        return table[value]


def _minute(text: Any) -> int | None:
    match = _HHMM.match(text) if isinstance(text, str) else None
    if not match:
        return None
    hours, minutes = int(match[1]), int(match[2])
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        return None
    return hours * 60 + minutes


def _route_set(r: _Reader, rid: str, item: Mapping[str, Any], known: Mapping[str, set[str]]) -> RouteSet:
    where = said(N_("route set %(id)s"), id=rid)
    service = r.choice(item, "service", where, (None, *SERVICES), None)
    routes, excluded = item.get("routes", []), item.get("except", [])
    for key, value in (("routes", routes), ("except", excluded)):
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            r.fail(where, said(N_("%(key)s must be a list of route names"), key=key))
    if not isinstance(routes, list):
        routes = []
    if not isinstance(excluded, list):
        excluded = []
    ranges = []
    for raw in item.get("ranges", []) or []:
        if (
            not isinstance(raw, list)
            or len(raw) != 2
            or not all(type(v) is int for v in raw)
            or not 0 <= raw[0] <= raw[1] <= MAX_ROUTE_NUMBER
        ):
            r.fail(
                where,
                said(
                    N_("range %(raw)r must be [low, high] with 0 <= low <= high <= %(max)s"),
                    raw=raw,
                    max=MAX_ROUTE_NUMBER,
                ),
            )
            continue
        ranges.append((raw[0], raw[1]))
    route_set = RouteSet(
        id=rid,
        service=service,
        routes=frozenset(v for v in routes if isinstance(v, str)),
        ranges=tuple(ranges),
        excluded=frozenset(v for v in excluded if isinstance(v, str)),
    )
    members = route_set.members()
    if not members:
        r.fail(where, said(N_("matches no route (every route of its ranges is excluded, or it lists none)")))
    elif service and known.get(service) and not members & known[service]:
        r.fail(where, said(N_("matches none of the known %(service)s routes"), service=service))
    return route_set


def _timeframe(r: _Reader, tid: str, value: Any) -> Timeframe:
    where = said(N_("timeframe %(id)s"), id=tid)
    days: list[list[tuple[int, int]]] = [[] for _ in range(8)]
    windows = value if isinstance(value, list) else []
    if not windows:
        r.fail(where, said(N_("must be a non-empty list of windows {days, start, end}")))
    for i, window in enumerate(windows):
        window = r.obj(window, said(N_("%(where)s window %(i)s"), where=where, i=i))
        start, end = _minute(window.get("start", "00:00")), _minute(window.get("end", "24:00"))
        if start is None or end is None or start >= end:
            r.fail(where, said(N_("window %(i)s needs start < end as HH:MM (00:00-24:00)"), i=i))
            continue
        week = window.get("days", [1, 2, 3, 4, 5, 6, 7])
        if not isinstance(week, list) or not week or not all(type(d) is int and 1 <= d <= 7 for d in week):
            r.fail(where, said(N_("window %(i)s days must be ISO weekdays 1 (Monday) .. 7 (Sunday)"), i=i))
            continue
        for day in week:
            days[day].append((start, end))
    return Timeframe(id=tid, windows=tuple(tuple(sorted(d)) for d in days))


def _validity_overlaps(a: Any, b: Any) -> bool:
    a0, a1 = a.valid_from or dt.date.min, a.valid_to or dt.date.max
    b0, b1 = b.valid_from or dt.date.min, b.valid_to or dt.date.max
    return a0 <= b1 and b0 <= a1


def _routes_overlap(a: RouteSet | None, b: RouteSet | None) -> bool:
    if a is None or b is None:
        return True
    return bool(a.members() & b.members())


def _sets_overlap(a: frozenset[str], b: frozenset[str]) -> bool:
    return not a or not b or bool(a & b)


def _areas_overlap(a: Area | None, b: Area | None) -> bool:
    return a is None or b is None or bool(a.stops & b.stops)


def _same_case(a: LegRule, b: LegRule) -> bool:
    """Can one trip match both rules? (then equal priorities leave the winner to chance)"""
    return (
        _areas_overlap(a.from_area, b.from_area)
        and _areas_overlap(a.to_area, b.to_area)
        and (a.service is None or b.service is None or a.service == b.service)
        and _routes_overlap(a.route_set, b.route_set)
        and (a.timeframe is None or b.timeframe is None or a.timeframe.overlaps(b.timeframe))
        and _sets_overlap(a.categories, b.categories)
        and _sets_overlap(a.media, b.media)
        and _sets_overlap(a.passes, b.passes)
        and (a.riders == "any" or b.riders == "any" or a.riders == b.riders)
        and _validity_overlaps(a, b)
    )


def _aware(value: Any, r: _Reader) -> dt.datetime | None:
    if value in (None, ""):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        r.fail(
            "effective_from", said(N_("%(value)r must be an ISO date-time with its UTC offset"), value=value)
        )
        return None
    if parsed.tzinfo is None:
        r.fail("effective_from", said(N_("%(value)r has no UTC offset"), value=value))
        return None
    return parsed


@dataclass
class _Stations:
    stops: dict[str, str]
    areas: dict[str, Area]
    lines: dict[str, Line]
    graph: dict[str, tuple[tuple[str, int, int], ...]]
    tables: dict[str, FareTable]
    gates: dict[str, GateRules]


def _stations(r: _Reader, data: Mapping[str, Any]) -> _Stations:
    """Stations, areas, lines, joins, distance fare tables and gate rules (all optional)."""
    stops: dict[str, str] = {}
    seen: set[str] = set()
    for i, item in enumerate(r.items(data, "stops")):
        sid = r.ident(item, f"stops[{i}]", seen)
        stops[sid] = str(item.get("name", sid))

    def known_stop(value: Any, where: str) -> str | None:
        if not isinstance(value, str) or value not in stops:
            r.fail(where, said(N_("station %(value)r is not in stops"), value=value))
            return None
        return value

    areas: dict[str, Area] = {}
    for aid, item in r.obj(data.get("areas", {}) or {}, "areas").items():
        where = said(N_("area %(id)s"), id=aid)
        if not isinstance(aid, str) or not _ID.match(aid):
            r.fail("areas", said(N_("id %(id)r is not a valid id"), id=aid))
            continue
        item = r.obj(item, where)
        members = item.get("stops", [])
        if not isinstance(members, list) or not members:
            r.fail(where, said(N_("stops must be a non-empty list of station ids")))
            members = []
        areas[aid] = Area(
            id=aid,
            name=str(item.get("name", aid)),
            stops=frozenset(s for s in members if known_stop(s, where)),
        )

    lines: dict[str, Line] = {}
    edges: dict[str, list[tuple[str, int, int]]] = {}

    def link(a: str, b: str, metres: int, count: int) -> None:
        edges.setdefault(a, []).append((b, metres, count))
        edges.setdefault(b, []).append((a, metres, count))

    seen = set()
    for i, item in enumerate(r.items(data, "lines")):
        lid = r.ident(item, f"lines[{i}]", seen)
        where = said(N_("line %(id)s"), id=lid)
        raw = item.get("stops", [])
        order: list[tuple[str, int]] = []
        if not isinstance(raw, list) or len(raw) < 2:
            r.fail(where, said(N_("stops must list at least two [station, metres from the first station]")))
            raw = []
        for j, pair in enumerate(raw):
            if not (isinstance(pair, list) and len(pair) == 2 and type(pair[1]) is int and pair[1] >= 0):
                r.fail(where, said(N_("stop %(j)s must be [station, metres] with integer metres >= 0"), j=j))
                continue
            if known_stop(pair[0], where) is None:
                continue
            if order and pair[1] <= order[-1][1]:
                r.fail(
                    where,
                    said(
                        N_("station %(station)s at %(metres)s m is not beyond %(previous)s"),
                        station=pair[0],
                        metres=pair[1],
                        previous=order[-1][0],
                    ),
                )
                continue
            order.append((pair[0], pair[1]))
        for (a, ma), (b, mb) in itertools.pairwise(order):
            link(a, b, mb - ma, 1)
        lines[lid] = Line(
            id=lid, service=r.choice(item, "service", where, SERVICES, "metro"), stops=tuple(order)
        )
    for i, item in enumerate(r.items(data, "joins")):
        # GTFS fare_leg_join_rules: two platforms of one interchange are one paid area (free transfer)
        where = f"joins[{i}]"
        a, b = known_stop(item.get("from_stop"), where), known_stop(item.get("to_stop"), where)
        if a and b:
            link(a, b, 0, 0)

    tables: dict[str, FareTable] = {}
    seen = set()
    for i, item in enumerate(r.items(data, "fare_tables")):
        tid = r.ident(item, f"fare_tables[{i}]", seen)
        where = said(N_("fare table %(id)s"), id=tid)
        rows = []
        if item.get("measure") == "od":
            cells: dict[tuple[str, str], int] = {}
            for raw_row in item.get("rows", []) or []:
                if not (
                    isinstance(raw_row, list)
                    and len(raw_row) == 3
                    and type(raw_row[2]) is int
                    and raw_row[2] >= 0
                ):
                    r.fail(
                        where,
                        said(N_("row %(row)r must be [from station, to station, amount_fen]"), row=raw_row),
                    )
                    continue
                a, b = known_stop(raw_row[0], where), known_stop(raw_row[1], where)
                if a and b:
                    cells[(a, b)] = raw_row[2]
            if not cells:
                r.fail(where, said(N_("needs at least one row [from station, to station, amount_fen]")))
            tables[tid] = FareTable(tid, str(item.get("name", tid)), "od", (), 0, 0, cells)
            continue
        for raw_row in item.get("rows", []) or []:
            if not (
                isinstance(raw_row, list)
                and len(raw_row) == 2
                and all(type(v) is int and v >= 0 for v in raw_row)
            ):
                r.fail(where, said(N_("row %(row)r must be [up to, amount_fen] in integers"), row=raw_row))
                continue
            if rows and (raw_row[0] <= rows[-1][0] or raw_row[1] < rows[-1][1]):
                r.fail(
                    where,
                    said(N_("row %(row)r must go further and cost no less than the row before"), row=raw_row),
                )
            rows.append((raw_row[0], raw_row[1]))
        if not rows:
            r.fail(where, said(N_("needs at least one row [up to, amount_fen]")))
            rows = [(0, 0)]
        beyond = r.obj(item.get("beyond", {}) or {}, where)
        tables[tid] = FareTable(
            id=tid,
            name=str(item.get("name", tid)),
            measure=r.choice(item, "measure", where, DISTANCES, "km"),
            rows=tuple(rows),
            beyond_every=r.integer(beyond, "every", where, default=0),
            beyond_add_fen=r.integer(beyond, "add_fen", where, default=0),
        )

    gates: dict[str, GateRules] = {}
    for i, item in enumerate(r.items(data, "gate_rules")):
        where = f"gate_rules[{i}]"
        service = r.choice(item, "service", where, SERVICES, "metro")
        if service in gates:
            r.fail(where, said(N_("a second gate rule for %(service)s"), service=service))
        gates[service] = GateRules(
            service=service,
            entry_fen=r.integer(item, "entry_fen", where, default=0),
            time_limit_minutes=r.integer(item, "time_limit_minutes", where, default=240, minimum=1),
            incomplete_fen=r.integer(item, "incomplete_fen", where),
            no_entry_fen=r.integer(item, "no_entry_fen", where),
            same_station_minutes=r.integer(item, "same_station_minutes", where, default=0),
            same_station_fen=r.integer(item, "same_station_fen", where, default=0),
        )
    return _Stations(
        stops=stops,
        areas=areas,
        lines=lines,
        graph={k: tuple(v) for k, v in edges.items()},
        tables=tables,
        gates=gates,
    )


def compile_document(payload: Mapping[str, Any]) -> CompiledRules:
    """Validate a rule document and compile it; RuleDocumentError lists every problem found."""
    r = _Reader()
    data = r.obj(payload, "document")
    if data and data.get("format", FORMAT) != FORMAT:
        r.fail(
            "format",
            said(
                N_("%(format)r is not a rule document format this code reads (%(expected)s)"),
                format=data.get("format"),
                expected=FORMAT,
            ),
        )
    version = data.get("version", 0)
    if type(version) is not int or version < 0:
        r.fail("version", said(N_("%(version)r must be a non-negative integer"), version=version))
        version = 0
    homes = data.get("home_divisions", [])
    if not isinstance(homes, list) or not all(
        isinstance(h, str) and len(h) == 6 and h.isdigit() for h in homes
    ):
        r.fail("home_divisions", said(N_("must be a list of 6-digit division codes")))
        homes = []

    known: dict[str, set[str]] = {}
    raw_known = data.get("known_routes", {}) or {}
    if not isinstance(raw_known, Mapping):
        r.fail("known_routes", said(N_("must map a service to its list of routes")))
        raw_known = {}
    for service, routes in raw_known.items():
        if service not in SERVICES or not isinstance(routes, list):
            r.fail(
                "known_routes",
                said(N_("%(service)r must be a service mapped to a list of routes"), service=service),
            )
            continue
        known[service] = {str(x) for x in routes}

    route_sets: dict[str, RouteSet] = {}
    raw_sets = r.obj(data.get("route_sets", {}) or {}, "route_sets")
    for rid, item in raw_sets.items():
        if not isinstance(rid, str) or not _ID.match(rid):
            r.fail("route_sets", said(N_("id %(id)r is not a valid id"), id=rid))
            continue
        route_sets[rid] = _route_set(r, rid, r.obj(item, f"route set {rid}"), known)

    timeframes: dict[str, Timeframe] = {}
    for tid, value in r.obj(data.get("timeframes", {}) or {}, "timeframes").items():
        if not isinstance(tid, str) or not _ID.match(tid):
            r.fail("timeframes", said(N_("id %(id)r is not a valid id"), id=tid))
            continue
        timeframes[tid] = _timeframe(r, tid, value)

    stations = _stations(r, data)

    quotas: dict[str, Quota] = {}
    seen: set[str] = set()
    for i, item in enumerate(r.items(data, "quotas")):
        qid = r.ident(item, f"quotas[{i}]", seen)
        where = said(N_("quota %(id)s"), id=qid)
        quotas[qid] = Quota(
            id=qid,
            name=str(item.get("name", qid)),
            period=r.choice(item, "period", where, PERIODS, "month"),
            rides=r.integer(item, "rides", where, minimum=1),
        )

    products = []
    seen = set()
    for i, item in enumerate(r.items(data, "fare_products")):
        pid = r.ident(item, f"fare_products[{i}]", seen)
        where = said(N_("fare product %(id)s"), id=pid)
        product = Product(
            id=pid,
            name=str(item.get("name", pid)),
            service=r.choice(item, "service", where, SERVICES, "bus"),
            route_set=r.ref(item, "route_set", where, route_sets),
            amount_fen=r.integer(item, "amount_fen", where, default=0 if item.get("fare_table") else None),
            priority=r.integer(item, "priority", where, default=0, minimum=None),
            valid_from=r.date(item, "valid_from", where),
            valid_to=r.date(item, "valid_to", where),
            from_area=r.ref(item, "from_area", where, stations.areas),
            to_area=r.ref(item, "to_area", where, stations.areas),
            table=r.ref(item, "fare_table", where, stations.tables),
        )
        if product.table is not None and "amount_fen" in item:
            r.fail(
                where, said(N_("has both amount_fen and fare_table: a product's fare comes from one of them"))
            )
        if product.valid_from and product.valid_to and product.valid_from > product.valid_to:
            r.fail(where, said(N_("valid_from is after valid_to")))
        products.append(product)
    for i, a in enumerate(products):
        for b in products[i + 1 :]:
            if (
                a.priority == b.priority
                and a.service == b.service
                and _routes_overlap(a.route_set, b.route_set)
                and _areas_overlap(a.from_area, b.from_area)
                and _areas_overlap(a.to_area, b.to_area)
                and _validity_overlaps(a, b)
            ):
                r.fail(
                    said(N_("fare product %(id)s"), id=b.id),
                    said(
                        N_(
                            "same priority %(priority)s as %(other)s for the same %(service)s routes: "
                            "give one a higher priority or a narrower route set"
                        ),
                        priority=b.priority,
                        other=a.id,
                        service=a.service,
                    ),
                )

    legs = []
    seen = set()
    for i, item in enumerate(r.items(data, "leg_rules")):
        lid = r.ident(item, f"leg_rules[{i}]", seen)
        where = said(N_("leg rule %(id)s"), id=lid)
        kind = r.choice(item, "kind", where, KINDS, "percent")
        value = 0 if kind == "free" else r.integer(item, "value", where)
        above = item.get("above_base", False) is True
        if kind == "percent" and value > 10000 and not above:
            r.fail(
                where,
                said(
                    N_("percent %(value)s basis points is above the base fare: set above_base to allow it"),
                    value=value,
                ),
            )
        rule = LegRule(
            id=lid,
            name=str(item.get("name", lid)),
            service=r.choice(item, "service", where, (None, *SERVICES), None),
            route_set=r.ref(item, "route_set", where, route_sets),
            timeframe=r.ref(item, "timeframe", where, timeframes),
            categories=r.codes(item, "categories", where, CATEGORIES),
            media=r.codes(item, "media", where, MEDIA),
            passes=frozenset(p for p in item.get("passes", []) or [] if isinstance(p, str)),
            riders=r.choice(item, "riders", where, RIDERS, "any"),
            kind=kind,
            value=value,
            above_base=above,
            priority=r.integer(item, "priority", where, default=0, minimum=None),
            valid_from=r.date(item, "valid_from", where),
            valid_to=r.date(item, "valid_to", where),
            quota=r.ref(item, "quota", where, quotas),
            from_area=r.ref(item, "from_area", where, stations.areas),
            to_area=r.ref(item, "to_area", where, stations.areas),
        )
        if rule.valid_from and rule.valid_to and rule.valid_from > rule.valid_to:
            r.fail(where, said(N_("valid_from is after valid_to")))
        if rule.route_set and rule.service and rule.route_set.service not in (None, rule.service):
            r.fail(
                where,
                said(
                    N_("route set %(route_set)s is for %(its_service)s, not %(service)s"),
                    route_set=rule.route_set.id,
                    its_service=rule.route_set.service,
                    service=rule.service,
                ),
            )
        legs.append(rule)
    for i, a in enumerate(legs):
        for b in legs[i + 1 :]:
            if a.priority == b.priority and _same_case(a, b):
                r.fail(
                    said(N_("leg rule %(id)s"), id=b.id),
                    said(
                        N_(
                            "same priority %(priority)s as %(other)s and one trip can match both: "
                            "give one a higher priority or make their cases disjoint"
                        ),
                        priority=b.priority,
                        other=a.id,
                    ),
                )

    transfers = []
    seen = set()
    for i, item in enumerate(r.items(data, "transfer_rules")):
        tid = r.ident(item, f"transfer_rules[{i}]", seen)
        where = said(N_("transfer rule %(id)s"), id=tid)
        ttype = r.choice(item, "transfer_type", where, TRANSFER_TYPES, 0)
        transfers.append(
            TransferRule(
                id=tid,
                name=str(item.get("name", tid)),
                from_service=r.choice(item, "from_service", where, (None, *SERVICES), None),
                from_route_set=r.ref(item, "from_route_set", where, route_sets),
                to_service=r.choice(item, "to_service", where, (None, *SERVICES), None),
                to_route_set=r.ref(item, "to_route_set", where, route_sets),
                within_minutes=None
                if item.get("within_minutes", 0) is None
                else r.integer(item, "within_minutes", where, minimum=1),
                max_transfers=r.integer(item, "max_transfers", where, default=1, minimum=-1),
                transfer_type=ttype,
                # type 1 adds AB to B: a negative AB is a transfer discount; types 0 and 2 charge AB itself
                amount_fen=r.integer(item, "amount_fen", where, default=0, minimum=None if ttype == 1 else 0),
                measure=r.choice(item, "measure", where, MEASURES, "previous_tap"),
                priority=r.integer(item, "priority", where, default=0, minimum=None),
            )
        )
    for i, a in enumerate(transfers):
        for b in transfers[i + 1 :]:
            if (
                a.priority == b.priority
                and (a.from_service is None or b.from_service is None or a.from_service == b.from_service)
                and (a.to_service is None or b.to_service is None or a.to_service == b.to_service)
                and _routes_overlap(a.from_route_set, b.from_route_set)
                and _routes_overlap(a.to_route_set, b.to_route_set)
            ):
                r.fail(
                    said(N_("transfer rule %(id)s"), id=b.id),
                    said(
                        N_("same priority %(priority)s as %(other)s for the same transfer"),
                        priority=b.priority,
                        other=a.id,
                    ),
                )

    caps = []
    seen = set()
    for i, item in enumerate(r.items(data, "caps")):
        cid = r.ident(item, f"caps[{i}]", seen)
        where = said(N_("cap %(id)s"), id=cid)
        caps.append(
            Cap(
                id=cid,
                name=str(item.get("name", cid)),
                period=r.choice(item, "period", where, PERIODS, "day"),
                amount_fen=r.integer(item, "amount_fen", where),
                service=r.choice(item, "service", where, (None, *SERVICES), None),
                categories=r.codes(item, "categories", where, CATEGORIES),
                media=r.codes(item, "media", where, MEDIA),
            )
        )

    raw_policy = r.obj(data.get("visitor_policy", {}) or {}, "visitor_policy")
    default = r.choice(raw_policy, "default", "visitor_policy", POLICIES, "host_rules")
    by_division: dict[str, str] = {}
    for i, item in enumerate(r.items(raw_policy, "tenants")):
        division = item.get("division")
        if not isinstance(division, str) or len(division) != 6 or not division.isdigit():
            r.fail(
                f"visitor_policy.tenants[{i}]",
                said(N_("division %(division)r must be a 6-digit code"), division=division),
            )
            continue
        by_division[division] = r.choice(item, "policy", f"visitor_policy.tenants[{i}]", POLICIES, default)
    by_network = []
    for i, item in enumerate(r.items(raw_policy, "networks")):
        where = f"visitor_policy.networks[{i}]"
        members = item.get("members", [])
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            r.fail(where, said(N_("members must be a list of division codes")))
            members = []
        by_network.append(
            (
                str(item.get("network", "")),
                frozenset(members),
                r.choice(item, "policy", where, POLICIES, default),
                str(item.get("agreement") or ""),
            )
        )

    effective_from = _aware(data.get("effective_from"), r)
    if not products and not r.problems:
        r.fail("fare_products", said(N_("the document has no fare product: nothing can be priced")))
    if r.problems:
        raise RuleDocumentError(r.problems)
    return CompiledRules(
        tenant=str(data.get("tenant", "")),
        version=version,
        effective_from=effective_from,
        home_divisions=frozenset(homes),
        route_sets=route_sets,
        timeframes=timeframes,
        products=tuple(products),
        leg_rules=tuple(legs),
        transfer_rules=tuple(transfers),
        caps=tuple(caps),
        quotas=quotas,
        visitors=VisitorPolicy(default=default, by_division=by_division, by_network=tuple(by_network)),
        payload=dict(data),
        stops=stations.stops,
        areas=stations.areas,
        lines=stations.lines,
        graph=stations.graph,
        tables=stations.tables,
        gates=stations.gates,
    )
