from __future__ import annotations

import graphene

from citycard.graphql.account.types import TenantKindEnum
from citycard.graphql.core.connection import connection_args
from citycard.graphql.core.permissions import PermissionsField
from citycard.graphql.core.types import NonNullList
from citycard.graphql.tenancy import resolvers
from citycard.graphql.tenancy.mutations import TenantActivate, TenantSuspend
from citycard.graphql.tenancy.types import RoamingNetwork, Tenant, TenantConnection
from citycard.platform.scopes import PlatformScope


class TenancyQueries(graphene.ObjectType):
    tenants = PermissionsField(
        TenantConnection,
        permissions=[PlatformScope.TENANTS_READ],
        description="Cities and counties, by division code.",
        **connection_args(kind=graphene.Argument(TenantKindEnum), province=graphene.String()),
    )
    tenant = PermissionsField(
        Tenant,
        permissions=[PlatformScope.TENANTS_READ],
        description="One tenant by its code.",
        code=graphene.String(required=True),
    )
    roaming_networks = PermissionsField(
        NonNullList(RoamingNetwork),
        permissions=[PlatformScope.NETWORKS_READ],
        description="Every roaming network (a handful: not paginated).",
    )
    roaming_network = PermissionsField(
        RoamingNetwork,
        permissions=[PlatformScope.NETWORKS_READ],
        description="One roaming network by its code (yrd, gba).",
        code=graphene.String(required=True),
    )

    @staticmethod
    def resolve_tenants(root, info, kind=None, province=None, **page):
        return resolvers.resolve_tenants(info, kind=kind, province=province, **page)

    @staticmethod
    def resolve_tenant(root, info, code):
        return resolvers.resolve_tenant(info, code=code)

    @staticmethod
    def resolve_roaming_networks(root, info):
        return resolvers.resolve_roaming_networks(info)

    @staticmethod
    def resolve_roaming_network(root, info, code):
        return resolvers.resolve_roaming_network(info, code=code)


class TenancyMutations(graphene.ObjectType):
    tenant_suspend = TenantSuspend.Field()
    tenant_activate = TenantActivate.Field()
