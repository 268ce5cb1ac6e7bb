"""The two schemas: partner apps on a tenant's domain, clearing staff and operators on the platform's.

Extension points (after the tenant-domain and clearing branches merge), each a package in Saleor's
layout (``types.py``, ``schema.py``, ``resolvers.py``, ``dataloaders.py``, ``mutations/``) added to the
lists below, with its cost entries in ``*_COST_MAP`` and its scopes already in
citycard/platform/scopes.py:

- tenant endpoint: ``cards`` (``card(number)`` with status, scheme, validity, applications, balances,
  ``transactions`` reusing ``terminals.resolvers.resolve_card_transactions``; mutations ``cardReportLoss``,
  ``cardApply``), ``cardholders`` (``cardholderVerify``, categories and concessions; every read through
  ``core.access.access_log_read``), ``subsidies``, ``service_points``;
- platform endpoint: ``clearing`` (agreements, cycles with their states, net positions, bilateral matrix,
  exceptions, disputes) behind ``PlatformScope.CLEARING_READ``.
"""

from __future__ import annotations

import graphene

from citycard.graphql.account.schema import ApiKeyQueries, PlatformUserQueries
from citycard.graphql.core.cost import CostMap, FieldCost
from citycard.graphql.tenancy.schema import TenancyMutations, TenancyQueries
from citycard.graphql.terminals.schema import TerminalQueries

PAGE = FieldCost(complexity=1, multipliers=("first", "last"))


class TenantQuery(ApiKeyQueries, TerminalQueries, graphene.ObjectType):
    """What a partner app may ask of one tenant, within its key's scopes."""


class PlatformQuery(PlatformUserQueries, TenancyQueries, graphene.ObjectType):
    """What clearing staff and platform operators may ask of the platform."""


class PlatformMutation(TenancyMutations, graphene.ObjectType):
    pass


tenant_schema = graphene.Schema(query=TenantQuery, auto_camelcase=True)
platform_schema = graphene.Schema(query=PlatformQuery, mutation=PlatformMutation, auto_camelcase=True)

TENANT_COST_MAP: CostMap = {
    "TenantQuery": {
        "terminals": PAGE,
        "transactions": PAGE,
        "cardTransactions": PAGE,
    },
}
PLATFORM_COST_MAP: CostMap = {
    "PlatformQuery": {
        "tenants": PAGE,
        "roamingNetworks": FieldCost(complexity=1),
    },
    # A list of members per network: a city and its counties (tens, not thousands).
    "RoamingNetwork": {"members": FieldCost(complexity=5)},
    "Tenant": {"counties": FieldCost(complexity=2), "networks": FieldCost(complexity=1)},
    "PlatformMutation": {
        "tenantSuspend": FieldCost(complexity=10),
        "tenantActivate": FieldCost(complexity=10),
    },
}
