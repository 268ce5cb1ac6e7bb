from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import Q

from citycard.graphql.core.dataloaders import DataLoader, by_key, grouped
from citycard.platform.models import Domain, NetworkMembership, RoamingNetwork, Tenant


class TenantByIdLoader(DataLoader[int, Tenant | None]):
    def batch_load(self, keys: list[int]) -> list[Tenant | None]:
        return by_key(Tenant.objects.filter(pk__in=set(keys)), keys, "pk")


class CountiesByCityIdLoader(DataLoader[int, list[Tenant]]):
    def batch_load(self, keys: list[int]) -> list[list[Tenant]]:
        rows = Tenant.objects.filter(parent_id__in=set(keys)).order_by("division_code")
        return grouped(rows, keys, "parent_id")


class DomainByTenantIdLoader(DataLoader[int, str | None]):
    def batch_load(self, keys: list[int]) -> list[str | None]:
        rows = Domain.objects.filter(tenant_id__in=set(keys), is_primary=True)
        found = {row.tenant_id: row.domain for row in rows}
        return [found.get(key) for key in keys]


class NetworksByCityIdLoader(DataLoader[int, list[RoamingNetwork]]):
    """The networks a city is a member of now (a county asks with its city's id)."""

    def batch_load(self, keys: list[int]) -> list[list[RoamingNetwork]]:
        rows = (
            NetworkMembership.objects.filter(tenant_id__in=set(keys), left_on__isnull=True)
            .select_related("network")
            .order_by("network__code")
        )
        groups: dict[int, list[RoamingNetwork]] = {key: [] for key in keys}
        for row in rows:
            groups[row.tenant_id].append(row.network)
        return [groups[key] for key in keys]


@dataclass(frozen=True)
class NetworkMember:
    tenant: Tenant
    joined_on: dt.date
    left_on: dt.date | None
    via: Tenant | None


class MembersByNetworkLoader(DataLoader[tuple[int, dt.date | None], list[NetworkMember]]):
    """Members of networks (on a date, or now): cities, each followed by the counties roaming through it.
    Two queries per batch, whatever the number of networks."""

    def batch_load(self, keys: list[tuple[int, dt.date | None]]) -> list[list[NetworkMember]]:
        condition = Q()
        for network_id, day in set(keys):
            active = (
                Q(left_on__isnull=True)
                if day is None
                else (Q(joined_on__lte=day) & (Q(left_on__isnull=True) | Q(left_on__gte=day)))
            )
            condition |= Q(network_id=network_id) & active
        memberships = list(
            NetworkMembership.objects.filter(condition)
            .select_related("tenant")
            .order_by("tenant__division_code")
        )
        counties: dict[int, list[Tenant]] = {}
        city_ids = {m.tenant_id for m in memberships}
        if city_ids:
            for county in Tenant.objects.filter(parent_id__in=city_ids).order_by("division_code"):
                counties.setdefault(county.parent_id, []).append(county)
        result = []
        for network_id, day in keys:
            members: list[NetworkMember] = []
            for m in memberships:
                if m.network_id != network_id:
                    continue
                if day is None and m.left_on is not None:
                    continue
                if day is not None and not (m.joined_on <= day and (m.left_on is None or m.left_on >= day)):
                    continue
                members.append(
                    NetworkMember(tenant=m.tenant, joined_on=m.joined_on, left_on=m.left_on, via=None)
                )
                members += [
                    NetworkMember(tenant=c, joined_on=m.joined_on, left_on=m.left_on, via=m.tenant)
                    for c in counties.get(m.tenant_id, [])
                ]
            result.append(members)
        return result
