"""Reading platform data: tenants, networks and who roams where."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db.models import Q, QuerySet, Subquery
from django.db.models.functions import Coalesce

from citycard.platform.models import ApiKey, NetworkMembership, RateWindow, RoamingNetwork, Tenant, TenantKind


def tenant_list(*, include_platform: bool = False) -> QuerySet[Tenant]:
    qs = Tenant.objects.select_related("parent").prefetch_related(
        "domains", "memberships__network", "parent__memberships__network"
    )
    if not include_platform:
        qs = qs.exclude(kind=TenantKind.PLATFORM)
    return qs.order_by("division_code")


def tenant_by_code(code: str) -> Tenant | None:
    return Tenant.objects.select_related("parent").filter(code=code).first()


def tenant_by_division(division_code: str) -> Tenant | None:
    """The tenant whose division code is ``division_code`` (the first 6 digits of a card number)."""
    return Tenant.objects.filter(division_code=division_code).first()


@dataclass(frozen=True)
class NetworkMember:
    tenant: Tenant
    joined_on: dt.date
    via: Tenant | None  # the city a county roams through; None for the city itself


def _active_on(day: dt.date | None) -> Q:
    if day is None:
        return Q(left_on__isnull=True)
    return Q(joined_on__lte=day) & (Q(left_on__isnull=True) | Q(left_on__gte=day))


def network_members(*, network_code: str, on: dt.date | None = None) -> list[NetworkMember]:
    """Cities that are members (on a date, or now) and the counties that roam through them."""
    memberships = (
        NetworkMembership.objects.filter(network__code=network_code)
        .filter(_active_on(on))
        .select_related("tenant")
        .prefetch_related("tenant__counties")
        .order_by("tenant__division_code")
    )
    members: list[NetworkMember] = []
    for membership in memberships:
        city = membership.tenant
        members.append(NetworkMember(tenant=city, joined_on=membership.joined_on, via=None))
        for county in sorted(city.counties.all(), key=lambda t: t.division_code):
            members.append(NetworkMember(tenant=county, joined_on=membership.joined_on, via=city))
    return members


def tenant_networks(*, tenant: Tenant, on: dt.date | None = None) -> QuerySet[RoamingNetwork]:
    """The networks a tenant roams in; a county roams in its city's."""
    city = tenant.clearing_tenant
    network_ids = NetworkMembership.objects.filter(tenant=city).filter(_active_on(on)).values("network_id")
    return RoamingNetwork.objects.filter(pk__in=network_ids).order_by("code")


def networks_shared(*, a: Tenant, b: Tenant, on: dt.date | None = None) -> QuerySet[RoamingNetwork]:
    """Networks in which both tenants (or their cities) are members."""
    return tenant_networks(tenant=a, on=on).filter(pk__in=tenant_networks(tenant=b, on=on).values("pk"))


def api_key_list(*, tenant_code: str, include_revoked: bool = True) -> QuerySet[ApiKey]:
    qs = ApiKey.objects.filter(tenant__code=tenant_code).select_related("tenant")
    if not include_revoked:
        qs = qs.filter(revoked_at__isnull=True)
    return qs.order_by("-created_at")


def api_key_by_id(key_id: str) -> ApiKey | None:
    """The key with this public id (its tenant joined), whatever its state; one query."""
    return ApiKey.objects.select_related("tenant").filter(key_id=key_id).first()


def api_key_with_rate_count(
    key_id: str, *, bucket: str, window_s: int, now: dt.datetime
) -> tuple[ApiKey | None, int | None]:
    """The key with this public id (as :func:`api_key_by_id`) and the hits of ``bucket`` in the current fixed
    window, in the same query (a failed-authentication count read on every request costs nothing extra);
    ``(None, None)`` when no key has this id."""
    start = rate_window_start(window_s=window_s, now=now)
    hits = RateWindow.objects.filter(bucket=bucket[:80], window_start=start)
    key = (
        ApiKey.objects.select_related("tenant")
        .annotate(rate_count=Coalesce(Subquery(hits.values("count")[:1]), 0))
        .filter(key_id=key_id)
        .first()
    )
    return (key, key.rate_count) if key is not None else (None, None)


def rate_window_start(*, window_s: int, now: dt.datetime) -> dt.datetime:
    """The start of the fixed window of ``window_s`` seconds that ``now`` falls in (UTC epoch aligned)."""
    epoch = int(now.timestamp())
    return dt.datetime.fromtimestamp(epoch - epoch % window_s, tz=dt.UTC)


def rate_limit_count(*, bucket: str, window_s: int, now: dt.datetime) -> int:
    """How many hits ``bucket`` has had in the current fixed window (``services.rate_limit_hit`` counts)."""
    start = rate_window_start(window_s=window_s, now=now)
    counted = RateWindow.objects.filter(bucket=bucket[:80], window_start=start).values_list(
        "count", flat=True
    )
    return counted.first() or 0


def card_list_versioned(*, entries: QuerySet, version: int, since: int | None) -> dict[str, Any]:
    """A versioned list of card numbers as terminals and members take it (``terminal_kit.hotlist.Hotlist``):
    ``{"version", "cards"}`` (the full list) or ``{"version", "delta": {"since", "added", "removed"}}`` (what
    changed after version ``since``). ``entries`` are rows with ``card_no``, ``version_added`` and
    ``version_removed`` (null: still listed): a tenant's hotlist, its terminals' hotlist, a network's. A
    ``since`` that is None, negative or newer than ``version`` gets the full list (the holder's copy is not
    ours); a card removed then listed again after ``since`` is in ``added`` only (it is on the list now)."""
    listed = entries.filter(version_removed__isnull=True)
    if since is None or since < 0 or since > version:
        return {"version": version, "cards": sorted(listed.values_list("card_no", flat=True))}
    added = set(listed.filter(version_added__gt=since).values_list("card_no", flat=True))
    removed = entries.filter(version_added__lte=since, version_removed__gt=since).values_list(
        "card_no", flat=True
    )
    return {
        "version": version,
        "delta": {"since": since, "added": sorted(added), "removed": sorted(set(removed) - added)},
    }
