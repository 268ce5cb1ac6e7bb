"""Reading fares: the draft rule document from the rows, published documents verified, quotes, rechecks."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import F
from django.db.models.fields.json import KT
from django.utils import timezone, translation
from django.utils.translation import gettext

from citycard.platform.errors import DomainError, NotFound
from citycard.platform.keys import tenant_public_keys
from citycard.platform.models import Publication, Tenant
from citycard.platform.publications import publication_get, publication_latest
from citycard.platform.selectors import network_members
from citycard.tenants.fares.gtfs import feed_write, rules_to_gtfs
from citycard.tenants.fares.models import (
    Area,
    Cap,
    FareProduct,
    FareTable,
    GateRule,
    GtfsSource,
    LegRule,
    Line,
    Quota,
    RouteSet,
    Stop,
    StopJoin,
    Timeframe,
    TransferRule,
    VisitorPolicy,
)
from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.fares import (
    KIND,
    Card,
    FareEngine,
    FareError,
    FareQuote,
    RuleDocumentError,
    Trip,
    compile_document,
    load_signed,
)
from citycard.terminal_kit.fares.document import LegRule as PublishedLegRule
from citycard.terminal_kit.i18n import reason
from citycard.terminal_kit.signing import SignatureError


def _code(obj: Any) -> str | None:
    return obj.code if obj is not None else None


def _dates(obj: Any) -> dict[str, str | None]:
    return {
        "valid_from": obj.valid_from.isoformat() if obj.valid_from else None,
        "valid_to": obj.valid_to.isoformat() if obj.valid_to else None,
    }


def home_divisions(*, tenant: Tenant) -> list[str]:
    """Cards issued here are local: the city's division and its counties'."""
    city = tenant.clearing_tenant
    return sorted({city.division_code, *city.counties.values_list("division_code", flat=True)})


def _stations_body() -> dict[str, Any]:
    """Stations, areas, lines, joins, distance tables and gate rules — only the parts the tenant has, so a
    city without a metro has the same rule document as before they existed."""
    body: dict[str, Any] = {}
    stops = [
        {"id": s.code, "name": s.name, **({"lat": s.lat, "lon": s.lon} if s.lat else {})}
        for s in Stop.objects.order_by("code")
    ]
    if stops:
        body["stops"] = stops
    areas = {a.code: {"name": a.name, "stops": list(a.stops)} for a in Area.objects.order_by("code")}
    if areas:
        body["areas"] = areas
    lines = [
        {"id": x.code, "name": x.name, "service": x.service, "stops": x.stops}
        for x in Line.objects.order_by("code")
    ]
    if lines:
        body["lines"] = lines
    joins = [
        {"from_stop": j.from_stop, "to_stop": j.to_stop}
        for j in StopJoin.objects.order_by("from_stop", "to_stop")
    ]
    if joins:
        body["joins"] = joins
    tables = []
    for t in FareTable.objects.order_by("code"):
        table = {"id": t.code, "name": t.name, "measure": t.measure, "rows": t.rows}
        if t.beyond_every:
            table["beyond"] = {"every": t.beyond_every, "add_fen": t.beyond_add_fen}
        tables.append(table)
    if tables:
        body["fare_tables"] = tables
    gates = [
        {
            "service": g.service,
            "entry_fen": g.entry_fen,
            "time_limit_minutes": g.time_limit_minutes,
            "incomplete_fen": g.incomplete_fen,
            "no_entry_fen": g.no_entry_fen,
            "same_station_minutes": g.same_station_minutes,
            "same_station_fen": g.same_station_fen,
        }
        for g in GateRule.objects.order_by("service")
    ]
    if gates:
        body["gate_rules"] = gates
    return body


def _product(p: FareProduct) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": p.code,
        "name": p.name,
        "service": p.service,
        "route_set": _code(p.route_set),
        "amount_fen": p.amount_fen,
        "priority": p.priority,
        **_dates(p),
    }
    if p.from_area_id:
        row["from_area"] = p.from_area.code
    if p.to_area_id:
        row["to_area"] = p.to_area.code
    if p.fare_table_id:
        row["fare_table"] = p.fare_table.code
        del row["amount_fen"]
    return row


def _areas(r: LegRule) -> dict[str, str]:
    found = {}
    if r.from_area_id:
        found["from_area"] = r.from_area.code
    if r.to_area_id:
        found["to_area"] = r.to_area.code
    return found


def fares_rules_body() -> dict[str, Any]:
    """The rule rows of the current schema as the rule-document fields (no tenant facts yet)."""
    windows: dict[str, list[dict[str, Any]]] = {}
    for timeframe in Timeframe.objects.prefetch_related("windows").order_by("code"):
        windows[timeframe.code] = [
            {"days": list(w.days), "start": w.start, "end": w.end} for w in timeframe.windows.all()
        ]
    policies = list(VisitorPolicy.objects.order_by("scope", "key"))
    default = next((p.policy for p in policies if p.scope == VisitorPolicy.Scope.DEFAULT), "host_rules")
    return {
        "route_sets": {
            rs.code: {
                "name": rs.name,
                "service": rs.service or None,
                "routes": list(rs.routes),
                "ranges": rs.range_pairs(),
                "except": list(rs.excluded),
            }
            for rs in RouteSet.objects.order_by("code")
        },
        "timeframes": windows,
        "quotas": [
            {"id": q.code, "name": q.name, "period": q.period, "rides": q.rides}
            for q in Quota.objects.order_by("code")
        ],
        "fare_products": [
            _product(p)
            for p in FareProduct.objects.select_related(
                "route_set", "from_area", "to_area", "fare_table"
            ).order_by("code")
        ],
        "leg_rules": [
            {
                "id": r.code,
                "name": r.name,
                "service": r.service or None,
                "route_set": _code(r.route_set),
                "timeframe": _code(r.timeframe),
                "categories": sorted(r.categories),
                "media": sorted(r.media),
                "passes": sorted(r.passes),
                "riders": r.riders,
                "kind": r.kind,
                "value": r.value,
                "above_base": r.above_base,
                "priority": r.priority,
                "quota": _code(r.quota),
                **_dates(r),
                **_areas(r),
            }
            for r in LegRule.objects.select_related(
                "route_set", "timeframe", "quota", "from_area", "to_area"
            ).order_by("code")
        ],
        "transfer_rules": [
            {
                "id": t.code,
                "name": t.name,
                "from_service": t.from_service or None,
                "from_route_set": _code(t.from_route_set),
                "to_service": t.to_service or None,
                "to_route_set": _code(t.to_route_set),
                "within_minutes": t.within_minutes,
                "max_transfers": t.max_transfers,
                "transfer_type": t.transfer_type,
                "amount_fen": t.amount_fen,
                "measure": t.measure,
                "priority": t.priority,
            }
            for t in TransferRule.objects.select_related("from_route_set", "to_route_set").order_by("code")
        ],
        "caps": [
            {
                "id": c.code,
                "name": c.name,
                "period": c.period,
                "amount_fen": c.amount_fen,
                "service": c.service or None,
                "categories": sorted(c.categories),
                "media": sorted(c.media),
            }
            for c in Cap.objects.order_by("code")
        ],
        "visitor_policy": {
            "default": default,
            "networks": [
                {"network": p.key, "policy": p.policy}
                for p in policies
                if p.scope == VisitorPolicy.Scope.NETWORK
            ],
            "tenants": [
                {"division": p.key, "policy": p.policy}
                for p in policies
                if p.scope == VisitorPolicy.Scope.TENANT
            ],
        },
        **_stations_body(),
    }


# The roaming agreements' visitor policies: {network code: (fare-document policy, agreement label)} for the
# transit agreements of the networks the tenant is in on a date. Agreements live in interop (a layer above
# this one); interop registers the function that reads them (InteropConfig.ready). Without it (or without
# an agreement) the tenant's own network entries stand.
VisitorPolicySource = Callable[..., dict[str, tuple[str, str]]]
_visitor_policy_sources: list[VisitorPolicySource] = []


def visitor_policy_source_register(source: VisitorPolicySource) -> None:
    if source not in _visitor_policy_sources:
        _visitor_policy_sources.append(source)


# The moments (business date, when it opens) after which an agreement already decided changes the visitor
# policy of a network the tenant is in: publishing now must not drop a change scheduled for later.
VisitorPolicySchedule = Callable[..., list[tuple[dt.date, dt.datetime]]]
_visitor_policy_schedules: list[VisitorPolicySchedule] = []


def visitor_policy_schedule_register(schedule: VisitorPolicySchedule) -> None:
    if schedule not in _visitor_policy_schedules:
        _visitor_policy_schedules.append(schedule)


def agreed_policy_changes(*, tenant: Tenant, after: dt.datetime) -> list[tuple[dt.date, dt.datetime]]:
    changes: set[tuple[dt.date, dt.datetime]] = set()
    for schedule in _visitor_policy_schedules:
        changes.update(schedule(tenant=tenant, after=after))
    return sorted(changes)


def agreed_visitor_policies(*, tenant: Tenant, on: dt.date | None = None) -> dict[str, tuple[str, str]]:
    agreed: dict[str, tuple[str, str]] = {}
    for source in _visitor_policy_sources:
        agreed.update(source(tenant=tenant, on=on))
    return agreed


def _apply_agreements(policy: dict[str, Any], agreed: dict[str, tuple[str, str]], on: dt.date | None) -> None:
    """The agreement is the source of truth for visitors from its network: each agreed network's entry takes
    the agreement's policy (added if the rules name none, replaced if they name another), and a per-tenant
    entry for a member of an agreed network, which would bypass the agreement, is left out."""
    by_network = {e["network"]: e for e in policy["networks"]}
    for code, (agreed_policy, label) in sorted(agreed.items()):
        entry = by_network.get(code)
        if entry is None:
            entry = {"network": code}
            policy["networks"].append(entry)
        entry["policy"] = agreed_policy
        entry["agreement"] = label
    covered = {m.tenant.division_code for code in agreed for m in network_members(network_code=code, on=on)}
    policy["tenants"] = [e for e in policy["tenants"] if e["division"] not in covered]


def fares_document_build(*, tenant: Tenant, on: dt.date | None = None) -> dict[str, Any]:
    """The rule document the tenant's rows compile to (unsigned, unversioned): what publishing signs.

    Adds what only the platform knows: which divisions are local, the visitor policy of every roaming
    agreement (transit) the tenant is in, and the members of each network named in the visitor policy (as
    of ``on``), so a terminal decides offline who is a visitor."""
    return fares_agreements_apply({"format": 1, **fares_rules_body()}, tenant=tenant, on=on)


def fares_agreements_apply(document: dict[str, Any], *, tenant: Tenant, on: dt.date | None) -> dict[str, Any]:
    """``document`` (rule-document fields: drafted rows, or a published document's) with the platform's facts
    as of ``on``: the local divisions, each roaming agreement's visitor policy and each network's members.
    Returns a new document; ``document`` is left as it was."""
    document = copy.deepcopy(document)
    homes = home_divisions(tenant=tenant)
    policy = document["visitor_policy"]
    _apply_agreements(policy, agreed_visitor_policies(tenant=tenant, on=on), on)
    for entry in policy["networks"]:
        members = network_members(network_code=entry["network"], on=on)
        entry["members"] = sorted({m.tenant.division_code for m in members} - set(homes))
    rest = {k: v for k, v in document.items() if k not in ("format", "home_divisions")}
    return {"format": document.get("format", 1), "home_divisions": homes, **rest}


def _language() -> str:
    return translation.get_language() or settings.LANGUAGE_CODE


def kit_reason(exc: BaseException) -> str:
    """What a terminal kit's refusal (a rule document's problems, a bad signature) says, in the person's
    language: the kit's own catalogue (terminal_kit/i18n.py), the kit importing nothing of Django."""
    return reason(exc, _language())


def rule_problems(exc: RuleDocumentError) -> list[str]:
    """Each problem of a rule document, in the person's language."""
    return exc.translated_problems(_language())


def fares_validate(*, tenant: Tenant) -> list[str]:
    """Every problem of the draft rules ([] when they would publish), in the person's language."""
    try:
        compile_document(fares_document_build(tenant=tenant))
    except RuleDocumentError as exc:
        return rule_problems(exc)
    return []


# --- published documents -------------------------------------------------------------------------------

_engines: dict[tuple[int, str], FareEngine] = {}


def _engine_for(publication: Publication) -> FareEngine:
    """The compiled engine of a publication, its signature checked once with the owner's keys."""
    key = (publication.pk, publication.sha256)
    engine = _engines.get(key)
    if engine is None:
        keys = tenant_public_keys(tenant=publication.tenant, at=publication.published_at)
        engine = load_signed(publication.document, keys=keys, tenant=publication.tenant.code)
        if len(_engines) > 256:
            _engines.clear()
        _engines[key] = engine
    return engine


def fares_published(
    *, tenant: Tenant, version: int | None = None, at: dt.datetime | None = None
) -> tuple[Publication, FareEngine]:
    """The rule document a terminal of ``tenant`` uses (its city's, for a county), verified and compiled:
    ``version``, or the version in force at ``at`` (the highest effective by then; the latest when none is
    yet — a version published for a later change, e.g. an agreement's scheduled visitor policy, waits for
    it), or the latest."""
    if version is None and at is not None:
        in_force = fares_version_at(fares_in_force(tenant=tenant), at)
        version = in_force[0] if in_force is not None else None
    if version is None:
        publication = publication_latest(tenant=tenant, kind=KIND, inherit=True)
    else:
        publication = publication_get(tenant=tenant, kind=KIND, version=version, inherit=True)
    try:
        return publication, _engine_for(publication)
    except (SignatureError, RuleDocumentError) as exc:
        raise DomainError(
            gettext("published rule document v%(version)s refused: %(error)s")
            % {"version": publication.version, "error": kit_reason(exc)},
            code="bad_document",
        ) from exc


def fares_draft_engine(*, tenant: Tenant) -> FareEngine:
    """The draft rows compiled (the simulator previews them before publishing)."""
    try:
        return FareEngine(compile_document({**fares_document_build(tenant=tenant), "tenant": tenant.code}))
    except RuleDocumentError as exc:
        raise DomainError(
            gettext("the draft rules do not compile: %(error)s") % {"error": kit_reason(exc)},
            code="invalid_rules",
        ) from exc


@dataclass(frozen=True)
class QuoteResult:
    quote: FareQuote
    version: int | None  # published version used; None for the draft
    owner: str  # whose rules


def fares_quote(
    *,
    tenant: Tenant,
    service: str = "bus",
    route: str,
    at: dt.datetime,
    categories: Sequence[str] = (),
    scheme: str = "01",
    issuer: str | None = None,
    passes: Sequence[str] = (),
    state: dict[str, Any] | None = None,
    draft: bool = False,
) -> QuoteResult:
    """Price one trip as a terminal of ``tenant`` would (published rules), or with the draft rows."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=BEIJING)
    card = Card(
        issuer=issuer or tenant.clearing_tenant.division_code,
        scheme_code=scheme,
        categories=frozenset(categories),
        passes=frozenset(passes),
    )
    if draft:
        engine, version, owner = fares_draft_engine(tenant=tenant), None, tenant.code
    else:
        # What a terminal will use at ``at`` as published now: today's document for a moment already past,
        # and a version published for a later change (an agreement's scheduled policy) once it comes.
        publication, engine = fares_published(tenant=tenant, at=max(at, timezone.now()))
        version, owner = publication.version, publication.tenant.code
    try:
        quote = engine.quote(card, Trip(service=service, route=route, at=at, tenant=tenant.code), state or {})
    except FareError as exc:
        raise DomainError(str(exc), code="no_fare", field="route") from exc
    return QuoteResult(quote=quote, version=version, owner=owner)


# --- rechecking uploaded taps (terminals.checks.fare_recheck) ------------------------------------------


def fares_in_force(*, tenant: Tenant) -> list[tuple[dt.datetime | None, int, int]]:
    """(effective_from, version, publication pk) of every published rule document of the tenant's city:
    one query, documents not loaded."""
    rows = (
        Publication.objects.filter(tenant_id=tenant.clearing_tenant.pk, kind=KIND)
        .annotate(effective=KT("document__payload__effective_from"))
        .values_list("effective", "version", "pk")
        .order_by(F("version").asc())
    )
    out = []
    for effective, version, pk in rows:
        out.append((dt.datetime.fromisoformat(effective) if effective else None, version, pk))
    return out


def fares_engines(*, pks: Sequence[int]) -> dict[int, FareEngine]:
    """Compiled engines for publications, loading only the documents not compiled yet (one query at most)."""
    found: dict[int, FareEngine] = {}
    missing = []
    for pk in pks:
        hit = next((engine for (cached_pk, _), engine in _engines.items() if cached_pk == pk), None)
        if hit is None:
            missing.append(pk)
        else:
            found[pk] = hit
    if missing:
        for publication in Publication.objects.filter(pk__in=missing).select_related("tenant"):
            try:
                found[publication.pk] = _engine_for(publication)
            except (SignatureError, RuleDocumentError):
                continue  # a refused document checks nothing; its taps are not flagged by it
    return found


def fare_expected(
    engine: FareEngine, *, card: Card, trip: Trip, state: dict[str, Any], charged: int
) -> tuple[FareQuote | None, FareQuote | None]:
    """(the quote if it matches what was charged else None, the quote): the card's categories and passes
    are those the terminal recorded with the tap."""
    try:
        quote = engine.quote(card, trip, state)
    except FareError:
        return None, None
    return (quote if quote.fare_fen == charged else None), quote


def fares_version_at(
    versions: list[tuple[dt.datetime | None, int, int]], at: dt.datetime
) -> tuple[int, int] | None:
    """The (version, pk) in force at ``at``: the highest version whose effective_from is not after it."""
    best = None
    for effective, version, pk in versions:
        if effective is None or effective <= at:
            best = (version, pk)
    return best


def fares_export_gtfs(*, tenant: Tenant, path: str) -> list[str]:
    """Write the tenant's rules (its city's, for a county) as GTFS-Fares v2 files; returns the file names."""
    source = GtfsSource.objects.first()
    return feed_write(path, rules_to_gtfs(fares_rules_body(), source=source.names if source else None))


# --- concessions a cardholder's categories give (partner reads) ---------------------------------------


@dataclass(frozen=True)
class Concessions:
    """The published leg rules (优惠规则) that a local card of ``scheme`` with ``categories`` matches."""

    version: int | None  # the published rule document read; None when none is published
    owner: str | None  # whose rules (a county reads its city's)
    rules: tuple[PublishedLegRule, ...]


def concessions_for(*, tenant: Tenant, categories: Iterable[str], scheme: str, on: dt.date) -> Concessions:
    """Which concessions of the published rules apply to a local card of ``scheme`` whose holder has
    ``categories`` (valid on ``on``): the leg rules naming one of the categories, valid on ``on``, for local
    riders or any, for the card's scheme (or every scheme), needing no pass. Highest priority first, as the
    evaluator tries them; whether one applies to a ride still depends on the route, time and quota."""
    held = frozenset(categories)
    try:
        publication, engine = fares_published(tenant=tenant)
    except NotFound:
        return Concessions(version=None, owner=None, rules=())
    rules = tuple(
        rule
        for rule in sorted(engine.rules.leg_rules, key=lambda r: (-r.priority, r.id))
        if rule.categories & held
        and (rule.valid_from is None or rule.valid_from <= on)
        and (rule.valid_to is None or on <= rule.valid_to)
        and rule.riders in ("any", "local")
        and (not rule.media or scheme in rule.media)
        and not rule.passes
    )
    return Concessions(version=publication.version, owner=publication.tenant.code, rules=rules)


# --- stations, areas, lines, fare tables, gate rules (the CLI's listings) ------------------------------


def stations_list() -> list[Stop]:
    return list(Stop.objects.order_by("code"))


def areas_list() -> list[Area]:
    return list(Area.objects.order_by("code"))


def lines_list() -> list[Line]:
    return list(Line.objects.order_by("code"))


def fare_tables_list() -> list[FareTable]:
    return list(FareTable.objects.order_by("code"))


def gate_rules_list() -> list[GateRule]:
    return list(GateRule.objects.order_by("service"))
