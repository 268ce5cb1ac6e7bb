from __future__ import annotations

import graphene

from citycard.graphql.clearing import resolvers
from citycard.graphql.clearing.mutations import (
    ClearingCycleClose,
    ClearingCycleNet,
    ClearingCycleSettle,
    ClearingCycleValidate,
    DisputeRaise,
    DisputeResolve,
    RoamingAgreementVersionAdd,
)
from citycard.graphql.clearing.types import (
    ClearingCycle,
    ClearingCycleConnection,
    ClearingCycleStateEnum,
    ClearingRecord,
    ClearingServiceEnum,
    Dispute,
    DisputeConnection,
    DisputeStateEnum,
    RoamingAgreement,
)
from citycard.graphql.core.connection import connection_args
from citycard.graphql.core.permissions import PermissionsField
from citycard.graphql.core.types import NonNullList
from citycard.platform.scopes import PlatformScope


class ClearingCycleFilterInput(graphene.InputObjectType):
    network = graphene.String(description="The network's code (yrd, gba).")
    service = graphene.Field(ClearingServiceEnum)
    states = graphene.List(graphene.NonNull(ClearingCycleStateEnum), description="Any of these states.")
    business_date_from = graphene.Date(description="On or after this business date.")
    business_date_to = graphene.Date(description="On or before this business date.")


class DisputeFilterInput(graphene.InputObjectType):
    states = graphene.List(graphene.NonNull(DisputeStateEnum), description="Any of these states.")
    network = graphene.String()
    service = graphene.Field(ClearingServiceEnum)
    party = graphene.String(description="Disputes of records this tenant is the issuer or acquirer of.")


class ClearingQueries(graphene.ObjectType):
    roaming_agreements = PermissionsField(
        NonNullList(RoamingAgreement),
        permissions=[PlatformScope.CLEARING_READ],
        description="Roaming agreements, one per network and service, with their versions (a handful: not paginated).",
        network=graphene.String(description="The network's code (yrd, gba)."),
        service=graphene.Argument(ClearingServiceEnum),
    )
    clearing_cycles = PermissionsField(
        ClearingCycleConnection,
        permissions=[PlatformScope.CLEARING_READ],
        description="Clearing cycles, newest business date first (keyset cursors).",
        **connection_args(filter=graphene.Argument(ClearingCycleFilterInput)),
    )
    clearing_cycle = PermissionsField(
        ClearingCycle,
        permissions=[PlatformScope.CLEARING_READ],
        description="The cycle of a network's agreement for a service on a business date (monthly: its month).",
        network=graphene.String(required=True),
        service=graphene.Argument(ClearingServiceEnum, required=True),
        business_date=graphene.Date(required=True),
    )
    clearing_record = PermissionsField(
        ClearingRecord,
        permissions=[PlatformScope.CLEARING_READ],
        description="One clearing record by its id (<schema>-<transaction id>; adj-<record id> for an adjustment).",
        record_id=graphene.String(required=True),
    )
    disputes = PermissionsField(
        DisputeConnection,
        permissions=[PlatformScope.CLEARING_READ],
        description="Disputes of clearing records, newest first.",
        **connection_args(filter=graphene.Argument(DisputeFilterInput)),
    )
    dispute = PermissionsField(
        Dispute,
        permissions=[PlatformScope.CLEARING_READ],
        description="One dispute by its id.",
        id=graphene.ID(required=True),
    )

    @staticmethod
    def resolve_roaming_agreements(root, info, network=None, service=None):
        return resolvers.resolve_roaming_agreements(info, network=network, service=service)

    @staticmethod
    def resolve_clearing_cycles(root, info, filter=None, **page):
        return resolvers.resolve_clearing_cycles(info, filter=filter, **page)

    @staticmethod
    def resolve_clearing_cycle(root, info, network, service, business_date):
        return resolvers.resolve_clearing_cycle(
            info, network=network, service=service, business_date=business_date
        )

    @staticmethod
    def resolve_clearing_record(root, info, record_id):
        return resolvers.resolve_clearing_record(info, record_id=record_id)

    @staticmethod
    def resolve_disputes(root, info, filter=None, **page):
        return resolvers.resolve_disputes(info, filter=filter, **page)

    @staticmethod
    def resolve_dispute(root, info, id):
        return resolvers.resolve_dispute(info, id=id)


class ClearingMutations(graphene.ObjectType):
    clearing_cycle_close = ClearingCycleClose.Field()
    clearing_cycle_validate = ClearingCycleValidate.Field()
    clearing_cycle_net = ClearingCycleNet.Field()
    clearing_cycle_settle = ClearingCycleSettle.Field()
    dispute_raise = DisputeRaise.Field()
    dispute_resolve = DisputeResolve.Field()
    roaming_agreement_version_add = RoamingAgreementVersionAdd.Field()
