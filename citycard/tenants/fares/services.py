"""Changing fares: load a rule set (seeds, GTFS import), publish the signed rule document."""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import models, transaction
from django.db.models import ProtectedError
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy

from citycard.platform.audit.services import audit_record
from citycard.platform.errors import DomainError, NotFound, county_refuse
from citycard.platform.models import Publication, Tenant
from citycard.platform.publications import publication_publish
from citycard.tenants.fares import selectors
from citycard.tenants.fares.gtfs import GtfsError, feed_read, gtfs_to_rules
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
    TimeframeWindow,
    TransferRule,
    VisitorPolicy,
)
from citycard.terminal_kit.fares import KIND, RuleDocumentError, compile_document

_VOLATILE = {"tenant", "kind", "version", "effective_from"}

# What a county takes from its city here (platform.errors.county_refuse).
_FARES_INHERITED: dict[str, Any] = {
    "inherits": gettext_lazy("fare rules"),
    "code": "county_inherits",
    "field": "tenant",
}


def _validated(document: Mapping[str, Any]) -> None:
    try:
        compile_document(document)
    except RuleDocumentError as exc:
        raise DomainError(
            gettext("rules refused: %(error)s") % {"error": selectors.kit_reason(exc)}, code="invalid_rules"
        ) from exc


@transaction.atomic
def fares_document_load(*, tenant: Tenant, document: Mapping[str, Any], actor: str) -> dict[str, int]:
    """Replace the tenant's rule rows with a rule document's rules (seeds, imports). All or nothing:
    a document with any problem is refused with every problem named, and nothing is written."""
    county_refuse(tenant, cannot=gettext("load rules"), **_FARES_INHERITED)
    body = {k: v for k, v in document.items() if k not in _VOLATILE}
    _validated({**body, "home_divisions": selectors.home_divisions(tenant=tenant)})
    for model in (LegRule, TransferRule, Cap, FareProduct, Quota, TimeframeWindow, Timeframe, VisitorPolicy):
        model.objects.all().delete()
    RouteSet.objects.all().delete()
    areas, tables = _stations_load(body)
    GtfsSource.objects.all().delete()
    if body.get("gtfs"):
        GtfsSource.objects.create(names=body["gtfs"])
    route_sets = {}
    for code, rs in (body.get("route_sets") or {}).items():
        route_sets[code] = RouteSet.objects.create(
            code=code,
            name=rs.get("name", ""),
            service=rs.get("service") or "",
            routes=list(rs.get("routes", [])),
            ranges=", ".join(f"{lo}-{hi}" for lo, hi in rs.get("ranges", [])),
            excluded=list(rs.get("except", [])),
        )
    timeframes = {}
    for code, windows in (body.get("timeframes") or {}).items():
        timeframes[code] = Timeframe.objects.create(code=code)
        TimeframeWindow.objects.bulk_create(
            TimeframeWindow(
                timeframe=timeframes[code],
                days=w.get("days", [1, 2, 3, 4, 5, 6, 7]),
                start=w.get("start", "00:00"),
                end=w.get("end", "24:00"),
            )
            for w in windows
        )
    quotas = {}
    for q in body.get("quotas") or []:
        quotas[q["id"]] = Quota.objects.create(
            code=q["id"], name=q.get("name", ""), period=q.get("period", "month"), rides=q["rides"]
        )
    for p in body.get("fare_products") or []:
        FareProduct.objects.create(
            code=p["id"],
            name=p.get("name", ""),
            service=p.get("service", "bus"),
            route_set=route_sets.get(p.get("route_set")),
            amount_fen=p.get("amount_fen", 0),
            priority=p.get("priority", 0),
            valid_from=p.get("valid_from"),
            valid_to=p.get("valid_to"),
            from_area=areas.get(p.get("from_area")),
            to_area=areas.get(p.get("to_area")),
            fare_table=tables.get(p.get("fare_table")),
        )
    for r in body.get("leg_rules") or []:
        LegRule.objects.create(
            code=r["id"],
            name=r.get("name", ""),
            service=r.get("service") or "",
            route_set=route_sets.get(r.get("route_set")),
            timeframe=timeframes.get(r.get("timeframe")),
            categories=list(r.get("categories") or []),
            media=list(r.get("media") or []),
            passes=list(r.get("passes") or []),
            riders=r.get("riders", "any"),
            kind=r.get("kind", "percent"),
            value=r.get("value", 0),
            above_base=r.get("above_base", False),
            priority=r.get("priority", 0),
            valid_from=r.get("valid_from"),
            valid_to=r.get("valid_to"),
            quota=quotas.get(r.get("quota")),
            from_area=areas.get(r.get("from_area")),
            to_area=areas.get(r.get("to_area")),
        )
    for t in body.get("transfer_rules") or []:
        TransferRule.objects.create(
            code=t["id"],
            name=t.get("name", ""),
            from_service=t.get("from_service") or "",
            from_route_set=route_sets.get(t.get("from_route_set")),
            to_service=t.get("to_service") or "",
            to_route_set=route_sets.get(t.get("to_route_set")),
            within_minutes=t.get("within_minutes"),
            max_transfers=t.get("max_transfers", 1),
            transfer_type=t.get("transfer_type", 0),
            amount_fen=t.get("amount_fen", 0),
            measure=t.get("measure", "previous_tap"),
            priority=t.get("priority", 0),
        )
    for c in body.get("caps") or []:
        Cap.objects.create(
            code=c["id"],
            name=c.get("name", ""),
            period=c.get("period", "day"),
            amount_fen=c["amount_fen"],
            service=c.get("service") or "",
            categories=list(c.get("categories") or []),
            media=list(c.get("media") or []),
        )
    policy = body.get("visitor_policy") or {}
    VisitorPolicy.objects.create(scope="default", key="", policy=policy.get("default", "host_rules"))
    for entry in policy.get("networks") or []:
        VisitorPolicy.objects.create(scope="network", key=entry["network"], policy=entry["policy"])
    for entry in policy.get("tenants") or []:
        VisitorPolicy.objects.create(scope="tenant", key=entry["division"], policy=entry["policy"])
    counts = {
        "route_sets": len(route_sets),
        "fare_products": FareProduct.objects.count(),
        "leg_rules": LegRule.objects.count(),
        "transfer_rules": TransferRule.objects.count(),
        "caps": Cap.objects.count(),
        "quotas": len(quotas),
    }
    if areas or tables or Stop.objects.exists():
        counts.update(stops=Stop.objects.count(), areas=len(areas), fare_tables=len(tables))
    audit_record(
        action="fares.load", actor=actor, object_type="fare_rules", object_id=tenant.code, data=counts
    )
    return counts


def _stations_load(body: Mapping[str, Any]) -> tuple[dict[str, Area], dict[str, FareTable]]:
    """Stations, areas, lines, joins, distance tables and gate rules of a (validated) rule body."""
    for model in (Stop, Area, Line, StopJoin, FareTable, GateRule):
        model.objects.all().delete()
    Stop.objects.bulk_create(
        Stop(code=x["id"], name=x.get("name", ""), lat=x.get("lat", ""), lon=x.get("lon", ""))
        for x in body.get("stops") or []
    )
    areas = {
        code: Area.objects.create(code=code, name=a.get("name", ""), stops=list(a.get("stops", [])))
        for code, a in (body.get("areas") or {}).items()
    }
    Line.objects.bulk_create(
        Line(code=x["id"], name=x.get("name", ""), service=x.get("service", "metro"), stops=x["stops"])
        for x in body.get("lines") or []
    )
    StopJoin.objects.bulk_create(
        StopJoin(from_stop=j["from_stop"], to_stop=j["to_stop"]) for j in body.get("joins") or []
    )
    tables = {}
    for t in body.get("fare_tables") or []:
        beyond = t.get("beyond") or {}
        tables[t["id"]] = FareTable.objects.create(
            code=t["id"],
            name=t.get("name", ""),
            measure=t.get("measure", "km"),
            rows=t["rows"],
            beyond_every=beyond.get("every", 0),
            beyond_add_fen=beyond.get("add_fen", 0),
        )
    GateRule.objects.bulk_create(
        GateRule(**{k: v for k, v in g.items() if k != "name"}) for g in body.get("gate_rules") or []
    )
    return areas, tables


@transaction.atomic
def fares_stations_add(*, tenant: Tenant, fragment: Mapping[str, Any], actor: str) -> dict[str, int]:
    """Add a metro's stations, areas, lines, joins, distance tables, gate rules and fare products (a
    rule-document fragment) to the tenant's current rules, keeping every other rule as it is. Refused
    with every problem named, nothing written, if the result would not publish."""
    county_refuse(tenant, cannot=gettext("add stations"), **_FARES_INHERITED)
    body = selectors.fares_rules_body()
    for key in ("stops", "lines", "joins", "fare_tables", "gate_rules"):
        body[key] = [*body.get(key, []), *fragment.get(key, [])]
    body["areas"] = {**body.get("areas", {}), **fragment.get("areas", {})}
    body["fare_products"] = [*body["fare_products"], *fragment.get("fare_products", [])]
    source = GtfsSource.objects.first()
    if source is not None:
        body["gtfs"] = source.names
    return fares_document_load(tenant=tenant, document=body, actor=actor)


@transaction.atomic
def fares_publish(*, tenant: Tenant, actor: str, effective_from: dt.datetime | None = None) -> Publication:
    """Compile the tenant's rules, refuse them with every problem named, else sign and publish them as
    the next version of the ``fare_rules`` document, with the visitor policies of the agreements in force
    today; each later change of policy an agreement already schedules is published after it as its own
    version, effective from that change. Unchanged rules published again without a new ``effective_from``
    return the current version (re-running is harmless). Returns the version effective now."""
    county_refuse(tenant, cannot=gettext("publish rules"), **_FARES_INHERITED)
    document = selectors.fares_document_build(tenant=tenant)
    _validated({**document, "tenant": tenant.code})
    when = effective_from or timezone.now()
    if when.tzinfo is None:
        raise DomainError(
            gettext("effective_from must carry its time zone"), code="invalid", field="effective_from"
        )
    changes = selectors.agreed_policy_changes(tenant=tenant, after=when)
    if effective_from is None:
        # Unchanged: the latest versions are this document, then each scheduled change of it, in order.
        expected = [document] + [
            selectors.fares_agreements_apply(document, tenant=tenant, on=on) for on, _moment in changes
        ]
        recent = list(tenant.publications.filter(kind=KIND).order_by("-version")[: len(expected)])[::-1]
        bodies = [{k: v for k, v in p.document["payload"].items() if k not in _VOLATILE} for p in recent]
        if bodies == expected:
            return recent[0]
    document["effective_from"] = when.isoformat(timespec="seconds")
    publication = publication_publish(tenant=tenant, kind=KIND, payload=document, actor=actor)
    # A visitor policy an agreement already changes later follows as its own version, effective then.
    for on, moment in changes:
        fares_agreements_republish(tenant=tenant, actor=actor, on=on, effective_from=moment)
    return publication


@transaction.atomic
def fares_agreements_republish(
    *, tenant: Tenant, actor: str, on: dt.date, effective_from: dt.datetime
) -> Publication | None:
    """The tenant's latest published rule document again, with the roaming agreements in force on ``on``
    applied (visitor policies, members), effective from ``effective_from``: what a new agreement version
    asks of every member city. The draft rows are not read, so unpublished edits stay drafts. None when the
    tenant has published no rules; the latest version when the agreements change nothing in it."""
    county_refuse(tenant, cannot=gettext("publish rules"), **_FARES_INHERITED)
    latest = tenant.publications.filter(kind=KIND).order_by("-version").first()
    if latest is None:
        return None
    body = {k: v for k, v in latest.document["payload"].items() if k not in _VOLATILE}
    document = selectors.fares_agreements_apply(body, tenant=tenant, on=on)
    if document == body:
        return latest
    _validated({**document, "tenant": tenant.code})
    if effective_from.tzinfo is None:
        raise DomainError(
            gettext("effective_from must carry its time zone"), code="invalid", field="effective_from"
        )
    document["effective_from"] = effective_from.isoformat(timespec="seconds")
    return publication_publish(tenant=tenant, kind=KIND, payload=document, actor=actor)


def fares_import_gtfs(
    *, tenant: Tenant, path: str, actor: str, rates: Mapping[str, str] | None = None
) -> tuple[dict[str, int], list[str]]:
    """Replace the tenant's rules with what maps from a GTFS-Fares v2 feed (directory or zip).

    Amounts in another currency than the tenant's (CNY) are refused unless ``rates`` gives the yuan per
    unit of that currency ({"USD": "7.10"}). Returns the row counts and notes naming every part of the
    feed that did not map (and every conversion)."""
    try:
        converted = {k: Decimal(v) for k, v in (rates or {}).items()}
    except InvalidOperation as exc:
        raise DomainError(
            gettext("conversion rate %(rates)s is not a number") % {"rates": rates},
            code="invalid",
            field="rates",
        ) from exc
    if any(v <= 0 for v in converted.values()):
        raise DomainError(gettext("a conversion rate must be above zero"), code="invalid", field="rates")
    try:
        body, notes = gtfs_to_rules(feed_read(path), currency="CNY", rates=converted)
    except (GtfsError, OSError, KeyError, ValueError) as exc:
        raise DomainError(
            gettext("GTFS feed %(path)s refused: %(error)s")
            % {"path": path, "error": exc.translated() if isinstance(exc, GtfsError) else exc},
            code="invalid_feed",
            field="path",
        ) from exc
    counts = fares_document_load(tenant=tenant, document=body, actor=actor)
    return counts, notes


# --- editing one rule row (the admin, scripts) -------------------------------------------------------
#
# One create / change / delete per rule entity. Every row is checked with the model's own checks
# (``Model.full_clean``: field types, choices, uniqueness and the entity's ``clean()``), the very checks
# the admin forms run, so the admin and the services cannot disagree. A refusal is a ``DomainError``
# naming the field; nothing is written. Row references (route sets, timeframes, quotas) are given by code.

_REFERENCES: dict[str, type[models.Model]] = {
    "route_set": RouteSet,
    "from_route_set": RouteSet,
    "to_route_set": RouteSet,
    "timeframe": Timeframe,
    "quota": Quota,
    "from_area": Area,
    "to_area": Area,
    "fare_table": FareTable,
}


def _editable(model: type[models.Model]) -> tuple[str, ...]:
    return tuple(f.name for f in model._meta.concrete_fields if not f.primary_key)


def _label(model: type[models.Model]) -> str:
    return str(model._meta.verbose_name)


def _refusal(exc: ValidationError, what: str) -> DomainError:
    """One message naming every field refused (the first one is the error's ``field``)."""
    errors = exc.message_dict if hasattr(exc, "error_dict") else {NON_FIELD_ERRORS: exc.messages}
    parts = [
        "; ".join(messages) if field == NON_FIELD_ERRORS else f"{field}: {'; '.join(messages)}"
        for field, messages in errors.items()
    ]
    fields = [f for f in errors if f != NON_FIELD_ERRORS]
    return DomainError(
        gettext("%(what)s refused: %(parts)s") % {"what": what, "parts": " | ".join(parts)},
        code="invalid_rule",
        field=(fields or [None])[0],
    )


def _what(row: models.Model) -> str:
    return f"{_label(type(row))} {str(row)!r}"


def _assign(row: models.Model, values: Mapping[str, Any]) -> None:
    """Set the given fields on ``row``; references by code (or a row), unknown fields refused."""
    model = type(row)
    unknown = sorted(set(values) - set(_editable(model)))
    if unknown:
        raise DomainError(
            gettext("%(model)s has no field %(unknown)s (fields: %(fields)s)")
            % {"model": _label(model), "unknown": ", ".join(unknown), "fields": ", ".join(_editable(model))},
            code="invalid_rule",
            field=unknown[0],
        )
    for name, value in values.items():
        target = _REFERENCES.get(name)
        if target is None:
            setattr(row, name, value)
            continue
        if isinstance(value, target) or value is None or value == "":
            setattr(row, name, value or None)
            continue
        found = target.objects.filter(code=value).first()
        if found is None:
            raise DomainError(
                gettext("%(model)s refused: %(name)s: no %(target)s %(value)r")
                % {"model": _label(model), "name": name, "target": _label(target), "value": value},
                code="invalid_rule",
                field=name,
            )
        setattr(row, name, found)


def _checked(row: models.Model) -> None:
    try:
        row.full_clean()
    except ValidationError as exc:
        raise _refusal(exc, _what(row)) from exc


def _snapshot(row: models.Model) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name in _editable(type(row)):
        value = getattr(row, name)
        if isinstance(value, models.Model):
            value = getattr(value, "code", value.pk)
        elif isinstance(value, dt.date):
            value = value.isoformat()
        data[name] = value
    if isinstance(row, Timeframe):
        data["windows"] = [
            {"days": list(w.days), "start": w.start, "end": w.end}
            for w in row.windows.order_by("start", "pk")
        ]
    return data


_ENTITY = {
    RouteSet: "route_set",
    Timeframe: "timeframe",
    Quota: "quota",
    FareProduct: "fare_product",
    LegRule: "leg_rule",
    TransferRule: "transfer_rule",
    Cap: "cap",
    VisitorPolicy: "visitor_policy",
    Stop: "stop",
    Area: "area",
    Line: "line",
    FareTable: "fare_table",
    GateRule: "gate_rule",
}


def _audit(row: models.Model, action: str, actor: str, data: Mapping[str, Any]) -> None:
    object_type = _ENTITY[type(row)]
    audit_record(
        action=f"fares.{object_type}.{action}",
        actor=actor,
        object_type=object_type,
        object_id=str(row),
        data=data,
    )


def _row(model: type[models.Model], **lookup: Any) -> Any:
    row = model.objects.select_for_update().filter(**lookup).first()
    if row is None:
        shown = ", ".join(f"{k}={v!r}" for k, v in lookup.items())
        raise NotFound(
            gettext("no %(model)s with %(shown)s") % {"model": _label(model), "shown": shown},
            field=next(iter(lookup)),
        )
    return row


def _create(model: type[models.Model], *, tenant: Tenant, actor: str, fields: Mapping[str, Any]) -> Any:
    county_refuse(tenant, cannot=gettext("add a %(model)s") % {"model": _label(model)}, **_FARES_INHERITED)
    row = model()
    _assign(row, fields)
    _checked(row)
    row.save()
    _audit(row, "create", actor, _snapshot(row))
    return row


def _change(
    model: type[models.Model],
    *,
    tenant: Tenant,
    actor: str,
    lookup: Mapping[str, Any],
    changes: Mapping[str, Any],
) -> Any:
    county_refuse(tenant, cannot=gettext("change a %(model)s") % {"model": _label(model)}, **_FARES_INHERITED)
    row = _row(model, **lookup)
    before = _snapshot(row)
    _assign(row, changes)
    _checked(row)
    row.save()
    after = _snapshot(row)
    changed = {k: {"from": before[k], "to": v} for k, v in after.items() if before.get(k) != v}
    _audit(row, "change", actor, {"changed": changed})
    return row


def _delete(model: type[models.Model], *, tenant: Tenant, actor: str, lookup: Mapping[str, Any]) -> None:
    county_refuse(tenant, cannot=gettext("delete a %(model)s") % {"model": _label(model)}, **_FARES_INHERITED)
    row = _row(model, **lookup)
    snapshot = _snapshot(row)
    try:
        with transaction.atomic():
            row.delete()
    except ProtectedError as exc:
        users = sorted({str(o) for o in exc.protected_objects})
        raise DomainError(
            gettext("%(row)s is still used by %(users)s: change or delete those first")
            % {"row": _what(row), "users": ", ".join(users)},
            code="in_use",
            field="code" if hasattr(row, "code") else None,
        ) from exc
    _audit(row, "delete", actor, snapshot)


def _windows(timeframe: Timeframe, windows: Sequence[Mapping[str, Any]]) -> list[TimeframeWindow]:
    rows = []
    for n, w in enumerate(windows, 1):
        unknown = sorted(set(w) - {"days", "start", "end"})
        if unknown:
            raise DomainError(
                gettext("timeframe window %(n)s: no field %(unknown)s")
                % {"n": n, "unknown": ", ".join(unknown)},
                field="windows",
            )
        row = TimeframeWindow(
            timeframe=timeframe,
            days=list(w.get("days", [1, 2, 3, 4, 5, 6, 7])),
            start=w.get("start", "00:00"),
            end=w.get("end", "24:00"),
        )
        try:
            row.full_clean(exclude=["timeframe"])
        except ValidationError as exc:
            raise _refusal(exc, f"timeframe {timeframe.code!r} window {n}") from exc
        rows.append(row)
    return rows


@transaction.atomic
def route_set_create(*, tenant: Tenant, actor: str, fields: Mapping[str, Any]) -> RouteSet:
    """Add a route set (code, name, service, routes, ranges "1-499, 600-699", excluded)."""
    return _create(RouteSet, tenant=tenant, actor=actor, fields=fields)


@transaction.atomic
def route_set_change(*, tenant: Tenant, actor: str, code: str, changes: Mapping[str, Any]) -> RouteSet:
    """Change route set ``code``'s fields (``changes`` may rename it with a new ``code``)."""
    return _change(RouteSet, tenant=tenant, actor=actor, lookup={"code": code}, changes=changes)


@transaction.atomic
def route_set_delete(*, tenant: Tenant, actor: str, code: str) -> None:
    """Delete route set ``code``; refused while a product or rule refers to it."""
    _delete(RouteSet, tenant=tenant, actor=actor, lookup={"code": code})


@transaction.atomic
def fare_product_create(*, tenant: Tenant, actor: str, fields: Mapping[str, Any]) -> FareProduct:
    """Add a fare product (base fare); ``route_set`` by code."""
    return _create(FareProduct, tenant=tenant, actor=actor, fields=fields)


@transaction.atomic
def fare_product_change(*, tenant: Tenant, actor: str, code: str, changes: Mapping[str, Any]) -> FareProduct:
    return _change(FareProduct, tenant=tenant, actor=actor, lookup={"code": code}, changes=changes)


@transaction.atomic
def fare_product_delete(*, tenant: Tenant, actor: str, code: str) -> None:
    _delete(FareProduct, tenant=tenant, actor=actor, lookup={"code": code})


@transaction.atomic
def leg_rule_create(*, tenant: Tenant, actor: str, fields: Mapping[str, Any]) -> LegRule:
    """Add a discount rule; ``route_set``, ``timeframe`` and ``quota`` by code."""
    return _create(LegRule, tenant=tenant, actor=actor, fields=fields)


@transaction.atomic
def leg_rule_change(*, tenant: Tenant, actor: str, code: str, changes: Mapping[str, Any]) -> LegRule:
    return _change(LegRule, tenant=tenant, actor=actor, lookup={"code": code}, changes=changes)


@transaction.atomic
def leg_rule_delete(*, tenant: Tenant, actor: str, code: str) -> None:
    _delete(LegRule, tenant=tenant, actor=actor, lookup={"code": code})


@transaction.atomic
def transfer_rule_create(*, tenant: Tenant, actor: str, fields: Mapping[str, Any]) -> TransferRule:
    """Add a transfer rule; ``from_route_set`` and ``to_route_set`` by code."""
    return _create(TransferRule, tenant=tenant, actor=actor, fields=fields)


@transaction.atomic
def transfer_rule_change(
    *, tenant: Tenant, actor: str, code: str, changes: Mapping[str, Any]
) -> TransferRule:
    return _change(TransferRule, tenant=tenant, actor=actor, lookup={"code": code}, changes=changes)


@transaction.atomic
def transfer_rule_delete(*, tenant: Tenant, actor: str, code: str) -> None:
    _delete(TransferRule, tenant=tenant, actor=actor, lookup={"code": code})


@transaction.atomic
def cap_create(*, tenant: Tenant, actor: str, fields: Mapping[str, Any]) -> Cap:
    """Add a fare cap (封顶) per day or month."""
    return _create(Cap, tenant=tenant, actor=actor, fields=fields)


@transaction.atomic
def cap_change(*, tenant: Tenant, actor: str, code: str, changes: Mapping[str, Any]) -> Cap:
    return _change(Cap, tenant=tenant, actor=actor, lookup={"code": code}, changes=changes)


@transaction.atomic
def cap_delete(*, tenant: Tenant, actor: str, code: str) -> None:
    _delete(Cap, tenant=tenant, actor=actor, lookup={"code": code})


@transaction.atomic
def quota_create(*, tenant: Tenant, actor: str, fields: Mapping[str, Any]) -> Quota:
    """Add a quota (N rides a period under a leg rule)."""
    return _create(Quota, tenant=tenant, actor=actor, fields=fields)


@transaction.atomic
def quota_change(*, tenant: Tenant, actor: str, code: str, changes: Mapping[str, Any]) -> Quota:
    return _change(Quota, tenant=tenant, actor=actor, lookup={"code": code}, changes=changes)


@transaction.atomic
def quota_delete(*, tenant: Tenant, actor: str, code: str) -> None:
    """Delete quota ``code``; refused while a leg rule counts rides against it."""
    _delete(Quota, tenant=tenant, actor=actor, lookup={"code": code})


@transaction.atomic
def timeframe_create(
    *,
    tenant: Tenant,
    actor: str,
    fields: Mapping[str, Any],
    windows: Sequence[Mapping[str, Any]] = (),
) -> Timeframe:
    """Add a timeframe with its windows (each ``{"days": [1..7], "start": "07:00", "end": "09:00"}``)."""
    county_refuse(tenant, cannot=gettext("add a timeframe"), **_FARES_INHERITED)
    timeframe = Timeframe()
    _assign(timeframe, fields)
    _checked(timeframe)
    rows = _windows(timeframe, windows)
    timeframe.save()
    for row in rows:
        row.timeframe = timeframe
    TimeframeWindow.objects.bulk_create(rows)
    _audit(timeframe, "create", actor, _snapshot(timeframe))
    return timeframe


@transaction.atomic
def timeframe_change(
    *,
    tenant: Tenant,
    actor: str,
    code: str,
    changes: Mapping[str, Any],
    windows: Sequence[Mapping[str, Any]] | None = None,
) -> Timeframe:
    """Change timeframe ``code``; ``windows``, when given, replace all of its windows."""
    county_refuse(tenant, cannot=gettext("change a timeframe"), **_FARES_INHERITED)
    timeframe = _row(Timeframe, code=code)
    before = _snapshot(timeframe)
    _assign(timeframe, changes)
    _checked(timeframe)
    rows = None if windows is None else _windows(timeframe, windows)
    timeframe.save()
    if rows is not None:
        timeframe.windows.all().delete()
        TimeframeWindow.objects.bulk_create(rows)
    after = _snapshot(timeframe)
    changed = {k: {"from": before[k], "to": v} for k, v in after.items() if before.get(k) != v}
    _audit(timeframe, "change", actor, {"changed": changed})
    return timeframe


@transaction.atomic
def timeframe_delete(*, tenant: Tenant, actor: str, code: str) -> None:
    """Delete timeframe ``code`` and its windows; refused while a leg rule refers to it."""
    _delete(Timeframe, tenant=tenant, actor=actor, lookup={"code": code})


@transaction.atomic
def visitor_policy_create(*, tenant: Tenant, actor: str, fields: Mapping[str, Any]) -> VisitorPolicy:
    """Add what visitors get: ``scope`` default/network/tenant, ``key``, ``policy``."""
    return _create(VisitorPolicy, tenant=tenant, actor=actor, fields=fields)


@transaction.atomic
def visitor_policy_change(
    *, tenant: Tenant, actor: str, scope: str, key: str = "", changes: Mapping[str, Any]
) -> VisitorPolicy:
    """Change the visitor policy of ``scope``/``key`` (``changes`` may move it to another scope or key)."""
    return _change(
        VisitorPolicy, tenant=tenant, actor=actor, lookup={"scope": scope, "key": key}, changes=changes
    )


@transaction.atomic
def visitor_policy_delete(*, tenant: Tenant, actor: str, scope: str, key: str = "") -> None:
    _delete(VisitorPolicy, tenant=tenant, actor=actor, lookup={"scope": scope, "key": key})


# --- stations, areas, lines, fare tables and gate rules (进出站计费), one row at a time --------------------
#
# As the rule rows above: checked with the model's checks, audited, refused for a county; the stations an
# area or a line names must exist, and a station still named by an area, a line, a join or a fare table
# cannot be deleted. Publishing validates the whole document (a line's distances, a table's rows).


def _stations_known(codes: Sequence[str], what: str, field: str) -> None:
    missing = sorted(
        set(codes) - set(Stop.objects.filter(code__in=list(codes)).values_list("code", flat=True))
    )
    if missing:
        raise DomainError(
            f"{what} refused: {field}: no station {', '.join(missing)}", code="invalid_rule", field=field
        )


def _stop_users(code: str) -> list[str]:
    users = [f"area {a.code}" for a in Area.objects.filter(stops__contains=[code])]
    users += [f"line {line.code}" for line in Line.objects.all() if any(s[0] == code for s in line.stops)]
    users += [f"join {j.from_stop}-{j.to_stop}" for j in StopJoin.objects.filter(from_stop=code)]
    users += [f"join {j.from_stop}-{j.to_stop}" for j in StopJoin.objects.filter(to_stop=code)]
    users += [
        f"fare table {t.code}"
        for t in FareTable.objects.filter(measure="od")
        if any(code in (row[0], row[1]) for row in t.rows)
    ]
    return users


@transaction.atomic
def stop_create(*, tenant: Tenant, actor: str, fields: Mapping[str, Any]) -> Stop:
    """Add a station (车站): ``code`` (what gates name), ``name``, ``lat``/``lon`` as GTFS gives them."""
    return _create(Stop, tenant=tenant, actor=actor, fields=fields)


@transaction.atomic
def stop_change(*, tenant: Tenant, actor: str, code: str, changes: Mapping[str, Any]) -> Stop:
    if "code" in changes and changes["code"] != code and _stop_users(code):
        raise DomainError(
            f"station {code!r} is still used by {', '.join(_stop_users(code))}: its code cannot change",
            code="in_use",
            field="code",
        )
    return _change(Stop, tenant=tenant, actor=actor, lookup={"code": code}, changes=changes)


@transaction.atomic
def stop_delete(*, tenant: Tenant, actor: str, code: str) -> None:
    """Delete station ``code``; refused while an area, a line, a join or a fare table names it."""
    users = _stop_users(code)
    if users:
        raise DomainError(
            f"station {code!r} is still used by {', '.join(users)}: change or delete those first",
            code="in_use",
            field="code",
        )
    _delete(Stop, tenant=tenant, actor=actor, lookup={"code": code})


@transaction.atomic
def area_create(*, tenant: Tenant, actor: str, fields: Mapping[str, Any]) -> Area:
    """Add a fare area (票区, GTFS areas + stop_areas): ``code``, ``name``, ``stops`` (station codes)."""
    _stations_known(fields.get("stops") or [], f"fare area {fields.get('code')!r}", "stops")
    return _create(Area, tenant=tenant, actor=actor, fields=fields)


@transaction.atomic
def area_change(*, tenant: Tenant, actor: str, code: str, changes: Mapping[str, Any]) -> Area:
    _stations_known(changes.get("stops") or [], f"fare area {code!r}", "stops")
    return _change(Area, tenant=tenant, actor=actor, lookup={"code": code}, changes=changes)


@transaction.atomic
def area_delete(*, tenant: Tenant, actor: str, code: str) -> None:
    """Delete fare area ``code``; refused while a fare product or a leg rule prices by it."""
    _delete(Area, tenant=tenant, actor=actor, lookup={"code": code})


def _line_stops(stops: Any, what: str) -> None:
    if not isinstance(stops, list) or not all(
        isinstance(s, list | tuple) and len(s) == 2 and isinstance(s[0], str) and type(s[1]) is int
        for s in stops
    ):
        raise DomainError(
            f"{what} refused: stops: must be [[station code, metres], ...]",
            code="invalid_rule",
            field="stops",
        )
    metres = [s[1] for s in stops]
    if metres != sorted(set(metres)):
        raise DomainError(
            f"{what} refused: stops: distances must increase along the line",
            code="invalid_rule",
            field="stops",
        )
    _stations_known([s[0] for s in stops], what, "stops")


@transaction.atomic
def line_create(*, tenant: Tenant, actor: str, fields: Mapping[str, Any]) -> Line:
    """Add a line: ``code`` (the route its terminals are set to), ``service``, ``stops`` in line order with
    their distance from the first station in metres (``[["hz-1-01", 0], ["hz-1-02", 2100], ...]``)."""
    _line_stops(fields.get("stops", []), f"line {fields.get('code')!r}")
    return _create(Line, tenant=tenant, actor=actor, fields=fields)


@transaction.atomic
def line_change(*, tenant: Tenant, actor: str, code: str, changes: Mapping[str, Any]) -> Line:
    if "stops" in changes:
        _line_stops(changes["stops"], f"line {code!r}")
    return _change(Line, tenant=tenant, actor=actor, lookup={"code": code}, changes=changes)


@transaction.atomic
def line_delete(*, tenant: Tenant, actor: str, code: str) -> None:
    _delete(Line, tenant=tenant, actor=actor, lookup={"code": code})


def _table_rows(measure: str, rows: Any, what: str) -> None:
    """A fare table's rows as the evaluator takes them: ``[up to, fen]`` ascending (km, stations), or
    ``[from station, to station, fen]`` (od)."""
    if measure == "od":
        ok = isinstance(rows, list) and all(
            isinstance(r, list) and len(r) == 3 and type(r[2]) is int and r[2] >= 0 for r in rows
        )
        if ok:
            _stations_known(sorted({c for r in rows for c in r[:2]}), what, "rows")
    else:
        ok = isinstance(rows, list) and all(
            isinstance(r, list) and len(r) == 2 and all(type(v) is int and v >= 0 for v in r) for r in rows
        )
        ok = ok and all(b[0] > a[0] and b[1] >= a[1] for a, b in itertools.pairwise(rows))
    if not ok or not rows:
        shape = (
            "[from station, to station, fen]" if measure == "od" else "[up to, fen], further and no cheaper"
        )
        raise DomainError(f"{what} refused: rows: each row {shape}", code="invalid_rule", field="rows")


@transaction.atomic
def fare_table_create(*, tenant: Tenant, actor: str, fields: Mapping[str, Any]) -> FareTable:
    """Add a fare table (里程计价表 by ``km`` or ``stations``, or 站间票价表 ``od``)."""
    _table_rows(fields.get("measure", "km"), fields.get("rows"), f"fare table {fields.get('code')!r}")
    return _create(FareTable, tenant=tenant, actor=actor, fields=fields)


@transaction.atomic
def fare_table_change(*, tenant: Tenant, actor: str, code: str, changes: Mapping[str, Any]) -> FareTable:
    if "rows" in changes or "measure" in changes:
        current = FareTable.objects.filter(code=code).first()
        measure = changes.get("measure", current.measure if current else "km")
        rows = changes.get("rows", current.rows if current else [])
        _table_rows(measure, rows, f"fare table {code!r}")
    return _change(FareTable, tenant=tenant, actor=actor, lookup={"code": code}, changes=changes)


@transaction.atomic
def fare_table_delete(*, tenant: Tenant, actor: str, code: str) -> None:
    """Delete fare table ``code``; refused while a fare product prices by it."""
    _delete(FareTable, tenant=tenant, actor=actor, lookup={"code": code})


def _fen_of(text: str, where: str) -> int:
    try:
        value = Decimal(text.strip().removeprefix("¥").removesuffix("元")) * 100
    except InvalidOperation as exc:
        raise DomainError(f"{where}: {text!r} is not an amount in yuan", code="invalid", field="csv") from exc
    if value != value.to_integral_value() or value < 0:
        raise DomainError(f"{where}: {text!r} is not a whole number of fen", code="invalid", field="csv")
    return int(value)


def fare_table_parse_csv(text: str, *, stations: Sequence[str]) -> tuple[str, list[list[Any]]]:
    """(measure, rows) of a fare table published as CSV, amounts in yuan:

    * by distance bands (按里程分段): a header (its first cell says 公里/km or 站/stations) then ``up to,
      fare`` rows; ``0-4`` is read as up to 4;
    * a station x station matrix (站间票价表): the first row an empty cell then station codes, each next
      row a station code then the fare to each (empty: no fare; the diagonal is skipped)."""
    lines = [row for row in csv.reader(io.StringIO(text.lstrip("\ufeff"))) if any(c.strip() for c in row)]
    if len(lines) < 2:
        raise DomainError(
            "the fare table CSV needs a header and at least one row", code="invalid", field="csv"
        )
    header = [c.strip() for c in lines[0]]
    known = set(stations)
    if not header[0] and len(header) > 2 and set(header[1:]) <= known:
        rows = []
        for n, line in enumerate(lines[1:], 2):
            origin = line[0].strip()
            if origin not in known:
                raise DomainError(f"row {n}: no station {origin!r}", code="invalid", field="csv")
            for destination, cell in zip(header[1:], line[1:], strict=False):
                if cell.strip() and destination != origin:
                    rows.append([origin, destination, _fen_of(cell, f"row {n}, {destination}")])
        return "od", rows
    if not header[0]:
        unknown = sorted(set(header[1:]) - known)
        raise DomainError(
            f"the matrix names stations not in the rules: {', '.join(unknown)}", code="invalid", field="csv"
        )
    head = header[0].lower()
    measure = "stations" if ("站" in head or "station" in head) else "km"
    rows = []
    for n, line in enumerate(lines[1:], 2):
        if len(line) < 2:
            raise DomainError(f"row {n}: needs up to and fare", code="invalid", field="csv")
        bound = line[0].strip().split("-")[-1].strip()
        if not bound.isdigit():
            raise DomainError(
                f"row {n}: {line[0]!r} is not a whole number of {measure}", code="invalid", field="csv"
            )
        rows.append([int(bound), _fen_of(line[1], f"row {n}")])
    return measure, rows


@transaction.atomic
def fare_table_import_csv(
    *,
    tenant: Tenant,
    actor: str,
    code: str,
    text: str,
    name: str = "",
    beyond_every: int = 0,
    beyond_add_fen: int = 0,
) -> FareTable:
    """Create or replace fare table ``code`` from a CSV as a metro publishes it (``fare_table_parse_csv``):
    checked and audited as a change of the table; refused with nothing written."""
    county_refuse(tenant, cannot="import a fare table", **_FARES_INHERITED)
    measure, rows = fare_table_parse_csv(text, stations=list(Stop.objects.values_list("code", flat=True)))
    fields: dict[str, Any] = {"measure": measure, "rows": rows}
    if measure != "od":
        fields.update(beyond_every=beyond_every, beyond_add_fen=beyond_add_fen)
    if name:
        fields["name"] = name
    if FareTable.objects.filter(code=code).exists():
        return fare_table_change(tenant=tenant, actor=actor, code=code, changes=fields)
    return fare_table_create(tenant=tenant, actor=actor, fields={"code": code, **fields})


@transaction.atomic
def gate_rule_set(*, tenant: Tenant, actor: str, service: str, changes: Mapping[str, Any]) -> GateRule:
    """Set the gate rules of ``service`` (进出站规则: entry deposit, time limit and its fare, exit without an
    entry, same-station exit window and fare), creating them if the service has none."""
    if GateRule.objects.filter(service=service).exists():
        return _change(GateRule, tenant=tenant, actor=actor, lookup={"service": service}, changes=changes)
    return _create(GateRule, tenant=tenant, actor=actor, fields={"service": service, **changes})


@transaction.atomic
def gate_rule_delete(*, tenant: Tenant, actor: str, service: str) -> None:
    _delete(GateRule, tenant=tenant, actor=actor, lookup={"service": service})
