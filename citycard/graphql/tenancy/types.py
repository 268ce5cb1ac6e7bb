from __future__ import annotations

import graphene

from citycard.graphql.account.types import TenantKindEnum
from citycard.graphql.core.connection import Connection
from citycard.graphql.core.types import NonNullList, global_id
from citycard.graphql.tenancy.dataloaders import (
    CountiesByCityIdLoader,
    DomainByTenantIdLoader,
    MembersByNetworkLoader,
    NetworksByCityIdLoader,
    TenantByIdLoader,
)
from citycard.platform.models import TenantStatus

TenantStatusEnum = graphene.Enum("TenantStatus", [(s.name, s.value) for s in TenantStatus])


class Tenant(graphene.ObjectType):
    """A city or county running its citizen-card system on the platform (租户)."""

    id = graphene.ID(required=True)
    code = graphene.String(required=True)
    name_zh = graphene.String(required=True)
    name_en = graphene.String(required=True)
    division_code = graphene.String(required=True, description="GB/T 2260 division code.")
    province = graphene.String(required=True)
    kind = graphene.Field(TenantKindEnum, required=True)
    status = graphene.Field(TenantStatusEnum, required=True)
    status_reason = graphene.String(required=True)
    created_at = graphene.DateTime(required=True)
    domain = graphene.String(description="The host name its partner apps and staff use.")
    parent = graphene.Field(lambda: Tenant, description="A county's city.")
    counties = NonNullList(lambda: Tenant, description="A city's counties (empty for a county).")
    networks = NonNullList(
        lambda: RoamingNetwork, description="Networks it roams in now (a county roams in its city's)."
    )

    @staticmethod
    def resolve_id(root, info):
        return global_id("Tenant", root.code)

    @staticmethod
    def resolve_kind(root, info):
        return str(root.kind)

    @staticmethod
    def resolve_status(root, info):
        return str(root.status)

    @staticmethod
    def resolve_domain(root, info):
        return DomainByTenantIdLoader(info.context).load(root.pk)

    @staticmethod
    def resolve_parent(root, info):
        return TenantByIdLoader(info.context).load(root.parent_id) if root.parent_id else None

    @staticmethod
    def resolve_counties(root, info):
        return CountiesByCityIdLoader(info.context).load(root.pk)

    @staticmethod
    def resolve_networks(root, info):
        return NetworksByCityIdLoader(info.context).load(root.parent_id or root.pk)


class TenantConnection(Connection):
    class Meta:
        node = Tenant


class NetworkMember(graphene.ObjectType):
    tenant = graphene.Field(Tenant, required=True)
    joined_on = graphene.Date(required=True, description="When the city joined (a county: its city).")
    left_on = graphene.Date()
    via = graphene.Field(Tenant, description="For a county: the city it roams through.")


class RoamingNetwork(graphene.ObjectType):
    """A roaming network (长三角 yrd, 大湾区 gba) whose members' cards work in each other's terminals."""

    id = graphene.ID(required=True)
    code = graphene.String(required=True)
    name_zh = graphene.String(required=True)
    name_en = graphene.String(required=True)
    eligible_prefixes = NonNullList(graphene.String, description="Division-code prefixes that may join.")
    members = NonNullList(
        NetworkMember,
        on=graphene.Date(description="Members on this date (default: now)."),
        description="Member cities, each followed by its counties.",
    )

    @staticmethod
    def resolve_id(root, info):
        return global_id("RoamingNetwork", root.code)

    @staticmethod
    def resolve_members(root, info, on=None):
        return MembersByNetworkLoader(info.context).load((root.pk, on))
