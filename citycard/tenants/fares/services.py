"""Changing fares: load a rule set (seeds, GTFS import), publish the signed rule document."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.utils import timezone

from citycard.platform.audit.services import audit_record
from citycard.platform.errors import DomainError
from citycard.platform.models import Publication, Tenant
from citycard.platform.publications import publication_publish
from citycard.tenants.fares import selectors
from citycard.tenants.fares.models import (
    Cap,
    FareProduct,
    LegRule,
    Quota,
    RouteSet,
    Timeframe,
    TimeframeWindow,
    TransferRule,
    VisitorPolicy,
)
from citycard.terminal_kit.fares import KIND, RuleDocumentError, compile_document

_VOLATILE = {"tenant", "kind", "version", "effective_from"}


def _refuse_county(tenant: Tenant, what: str) -> None:
    if tenant.kind == "county":
        raise DomainError(
            f"{tenant.code} is a county: it uses {tenant.clearing_tenant.code}'s fare rules and cannot {what}",
            code="county_inherits",
            field="tenant",
        )


def _validated(document: Mapping[str, Any]) -> None:
    try:
        compile_document(document)
    except RuleDocumentError as exc:
        raise DomainError(f"rules refused: {exc}", code="invalid_rules") from exc


@transaction.atomic
def fares_document_load(*, tenant: Tenant, document: Mapping[str, Any], actor: str) -> dict[str, int]:
    """Replace the tenant's rule rows with a rule document's rules (seeds, imports). All or nothing:
    a document with any problem is refused with every problem named, and nothing is written."""
    _refuse_county(tenant, "load rules")
    body = {k: v for k, v in document.items() if k not in _VOLATILE}
    _validated({**body, "home_divisions": selectors.home_divisions(tenant=tenant)})
    for model in (LegRule, TransferRule, Cap, FareProduct, Quota, TimeframeWindow, Timeframe, VisitorPolicy):
        model.objects.all().delete()
    RouteSet.objects.all().delete()
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
            amount_fen=p["amount_fen"],
            priority=p.get("priority", 0),
            valid_from=p.get("valid_from"),
            valid_to=p.get("valid_to"),
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
        )
    for t in body.get("transfer_rules") or []:
        TransferRule.objects.create(
            code=t["id"],
            name=t.get("name", ""),
            from_service=t.get("from_service") or "",
            from_route_set=route_sets.get(t.get("from_route_set")),
            to_service=t.get("to_service") or "",
            to_route_set=route_sets.get(t.get("to_route_set")),
            within_minutes=t["within_minutes"],
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
    audit_record(
        action="fares.load", actor=actor, object_type="fare_rules", object_id=tenant.code, data=counts
    )
    return counts


@transaction.atomic
def fares_publish(*, tenant: Tenant, actor: str, effective_from: dt.datetime | None = None) -> Publication:
    """Compile the tenant's rules, refuse them with every problem named, else sign and publish them as
    the next version of the ``fare_rules`` document. Unchanged rules published again without a new
    ``effective_from`` return the current version (re-running is harmless)."""
    _refuse_county(tenant, "publish rules")
    document = selectors.fares_document_build(tenant=tenant)
    _validated({**document, "tenant": tenant.code})
    latest = tenant.publications.filter(kind=KIND).order_by("-version").first()
    if latest is not None and effective_from is None:
        previous = {k: v for k, v in latest.document["payload"].items() if k not in _VOLATILE}
        if previous == document:
            return latest
    when = effective_from or timezone.now()
    if when.tzinfo is None:
        raise DomainError("effective_from must carry its time zone", code="invalid", field="effective_from")
    document["effective_from"] = when.isoformat(timespec="seconds")
    return publication_publish(tenant=tenant, kind=KIND, payload=document, actor=actor)


def fares_import_gtfs(*, tenant: Tenant, path: str, actor: str) -> tuple[dict[str, int], list[str]]:
    """Replace the tenant's rules with what maps from a GTFS-Fares v2 feed (directory or zip).

    Returns the row counts and notes naming every part of the feed that did not map."""
    from citycard.tenants.fares.gtfs import GtfsError, feed_read, gtfs_to_rules

    try:
        body, notes = gtfs_to_rules(feed_read(path))
    except (GtfsError, OSError, KeyError, ValueError) as exc:
        raise DomainError(f"GTFS feed {path} refused: {exc}", code="invalid_feed", field="path") from exc
    counts = fares_document_load(tenant=tenant, document=body, actor=actor)
    return counts, notes
