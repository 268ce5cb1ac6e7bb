from __future__ import annotations

from typing import Any

from citycard.graphql.core.connection import Key, keyset_page
from citycard.graphql.core.types import enum_value
from citycard.graphql.tenancy.types import TenantConnection
from citycard.platform.models import RoamingNetwork, Tenant, TenantKind

TENANT_KEYS = (Key("division_code"),)


def resolve_tenants(info: Any, *, kind: Any = None, province: str | None = None, **page: Any):
    qs = Tenant.objects.exclude(kind=TenantKind.PLATFORM)
    if kind:
        qs = qs.filter(kind=enum_value(kind))
    if province:
        qs = qs.filter(province=province)
    return keyset_page(qs, connection_type=TenantConnection, keys=TENANT_KEYS, **page)


def resolve_tenant(info: Any, *, code: str) -> Tenant | None:
    return Tenant.objects.exclude(kind=TenantKind.PLATFORM).filter(code=code.strip().lower()).first()


def resolve_roaming_networks(info: Any) -> list[RoamingNetwork]:
    return list(RoamingNetwork.objects.order_by("code"))


def resolve_roaming_network(info: Any, *, code: str) -> RoamingNetwork | None:
    return RoamingNetwork.objects.filter(code=code.strip().lower()).first()
