"""The two schemas: partner apps on a tenant's domain, clearing staff and operators on the platform's.

Each domain is a package in Saleor's layout (``types.py``, ``schema.py``, ``resolvers.py``,
``dataloaders.py``, ``mutations/``) mounted below, with its cost entries in ``*_COST_MAP`` and its scopes in
citycard/platform/scopes.py:

- tenant endpoint: ``account`` (me), ``terminals`` (terminals, transactions, card history), ``cards``
  (``card(number)`` with scheme, validity, applications, balances, transactions; ``cardReportLost``,
  ``cardApply``), ``cardholders`` (``cardholderVerify``, ``cardholderCategories`` with concessions),
  ``subsidies`` (``subsidyPayments``), ``service_points`` (``servicePoints``), ``medical`` (a hospital's
  ``medicalClaimSubmit`` and ``medicalClaim``), ``entitlements`` (``cardEntitlements``, ``entitlementBuy``,
  ``acceptanceCheck`` for service points), ``merchants`` (``merchantPay``, ``merchantRefund``,
  ``cardMerchantPayments``), ``payments`` (``topupOrderCreate``, ``topupOrder``), ``credit`` (``creditBill``,
  ``creditHistory``, ``creditPay``); every read of card or
  cardholder data goes through
  ``core.access.access_log_read``;
- platform endpoint: ``account``, ``tenancy``, ``clearing`` (agreements, cycles with their states, totals,
  bilateral matrix, net positions, instructions, exceptions, disputes, reconciliation files behind
  ``PlatformScope.CLEARING_READ``; stepping cycles and disputes behind ``PlatformScope.CLEARING_MANAGE``).
"""

from __future__ import annotations

import graphene

from citycard.graphql.account.schema import ApiKeyQueries, PlatformUserQueries
from citycard.graphql.cardholders.schema import CardholderQueries
from citycard.graphql.cards.schema import CardMutations, CardQueries
from citycard.graphql.clearing.schema import ClearingMutations, ClearingQueries
from citycard.graphql.core.cost import CostMap, FieldCost
from citycard.graphql.credit.schema import CreditMutations, CreditQueries
from citycard.graphql.entitlements.schema import EntitlementMutations, EntitlementQueries
from citycard.graphql.medical.schema import MedicalMutations, MedicalQueries
from citycard.graphql.merchants.schema import MerchantMutations, MerchantQueries
from citycard.graphql.payments.schema import PaymentMutations, PaymentQueries
from citycard.graphql.service_points.schema import ServicePointQueries
from citycard.graphql.subsidies.schema import SubsidyQueries
from citycard.graphql.tenancy.schema import TenancyMutations, TenancyQueries
from citycard.graphql.terminals.schema import TerminalQueries

PAGE = FieldCost(complexity=1, multipliers=("first", "last"))


class TenantQuery(
    ApiKeyQueries,
    TerminalQueries,
    CardQueries,
    CardholderQueries,
    SubsidyQueries,
    ServicePointQueries,
    MedicalQueries,
    EntitlementQueries,
    MerchantQueries,
    PaymentQueries,
    CreditQueries,
    graphene.ObjectType,
):
    """What a partner app may ask of one tenant, within its key's scopes."""


class TenantMutation(
    CardMutations,
    MedicalMutations,
    EntitlementMutations,
    MerchantMutations,
    PaymentMutations,
    CreditMutations,
    graphene.ObjectType,
):
    """What a partner app may change in one tenant, within its key's scopes (errors as data)."""


class PlatformQuery(PlatformUserQueries, TenancyQueries, ClearingQueries, graphene.ObjectType):
    """What clearing staff and platform operators may ask of the platform."""


class PlatformMutation(TenancyMutations, ClearingMutations, graphene.ObjectType):
    pass


tenant_schema = graphene.Schema(query=TenantQuery, mutation=TenantMutation, auto_camelcase=True)
platform_schema = graphene.Schema(query=PlatformQuery, mutation=PlatformMutation, auto_camelcase=True)

TENANT_COST_MAP: CostMap = {
    "TenantQuery": {
        "terminals": PAGE,
        "transactions": PAGE,
        "cardTransactions": PAGE,
        "subsidyPayments": PAGE,
        "servicePoints": PAGE,
        # A keyed hash (and its key's derivation) per call: dearer than a plain lookup.
        "cardholderVerify": FieldCost(complexity=5),
        "cardholderCategories": FieldCost(complexity=5),
        "cardEntitlements": FieldCost(complexity=2),
        "cardMerchantPayments": FieldCost(complexity=2, multipliers=("limit",)),
        "creditHistory": FieldCost(complexity=2, multipliers=("limit",)),
        "creditBill": FieldCost(complexity=2),
    },
    "Card": {"transactions": PAGE, "balance": FieldCost(complexity=2)},
    # Tens of items at most per payment.
    "SubsidyPayment": {"items": FieldCost(complexity=1)},
    # At most 500 lines a claim (one stored list); the outcome is one batched query per request.
    "MedicalClaim": {"lines": FieldCost(complexity=2), "adjudication": FieldCost(complexity=1)},
    "TenantMutation": {
        "cardReportLost": FieldCost(complexity=10),
        "cardApply": FieldCost(complexity=10),
        # Prices against the catalogue, writes the claim, its audit entry and a signed outbox message.
        "medicalClaimSubmit": FieldCost(complexity=10),
        # A ledger posting, the grant, its audit entry and the offline list's version.
        "entitlementBuy": FieldCost(complexity=10),
        # A citizen code's signature, the grant's lock, the use and the read log.
        "acceptanceCheck": FieldCost(complexity=5),
        # A signed request to the provider and its signed answer.
        "topupOrderCreate": FieldCost(complexity=10),
        # The line's lock, a ledger posting, the merchant's payment and its audit entry.
        "creditPay": FieldCost(complexity=10),
    },
}
PLATFORM_COST_MAP: CostMap = {
    "PlatformQuery": {
        "tenants": PAGE,
        "roamingNetworks": FieldCost(complexity=1),
        "roamingAgreements": FieldCost(complexity=1),
        "clearingCycles": PAGE,
        "disputes": PAGE,
    },
    # Per cycle: each list is one batched query whatever the page; the matrix of a network of n members is
    # n² cells at most, positions and instructions n + 1, disputes and files a handful.
    "ClearingCycle": {
        "totals": FieldCost(complexity=1),
        "stateHistory": FieldCost(complexity=1),
        "bilateralMatrix": FieldCost(complexity=5),
        "bilateralCells": PAGE,
        "netPositions": FieldCost(complexity=2),
        "settlementInstructions": FieldCost(complexity=2),
        # Up to 1,000 groups (more: PAGINATION_REQUIRED), one aggregate over the cycle's rejections.
        "exceptionSummary": FieldCost(complexity=5),
        "exceptionGroups": PAGE,
        "exceptions": PAGE,
        "records": PAGE,
        "disputes": FieldCost(complexity=2),
        "reconciliationFiles": FieldCost(complexity=2),
    },
    # A list of members per network: a city and its counties (tens, not thousands).
    "RoamingNetwork": {"members": FieldCost(complexity=5)},
    "Tenant": {"counties": FieldCost(complexity=2), "networks": FieldCost(complexity=1)},
    "PlatformMutation": {
        "tenantSuspend": FieldCost(complexity=10),
        "tenantActivate": FieldCost(complexity=10),
        # Validation and settlement reach into every issuer's schema and every participant's inbox.
        "clearingCycleClose": FieldCost(complexity=10),
        "clearingCycleValidate": FieldCost(complexity=50),
        "clearingCycleNet": FieldCost(complexity=20),
        "clearingCycleSettle": FieldCost(complexity=50),
        "disputeRaise": FieldCost(complexity=10),
        "disputeResolve": FieldCost(complexity=10),
    },
}
