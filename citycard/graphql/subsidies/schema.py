from __future__ import annotations

import graphene

from citycard.graphql.core.connection import connection_args
from citycard.graphql.core.permissions import PermissionsField
from citycard.graphql.subsidies import resolvers
from citycard.graphql.subsidies.types import SubsidyPaymentConnection
from citycard.platform.scopes import Scope


class SubsidyQueries(graphene.ObjectType):
    subsidy_payments = PermissionsField(
        SubsidyPaymentConnection,
        permissions=[Scope.SUBSIDIES_READ],
        description="Subsidy payments to the holder of a card of this tenant, newest first, with their items "
        "(补贴明细); empty for an anonymous card or a number that is not this tenant's. Logged as a read of the "
        "cardholder's data.",
        **connection_args(card_number=graphene.String(required=True)),
    )

    @staticmethod
    def resolve_subsidy_payments(root, info, card_number, **page):
        return resolvers.resolve_subsidy_payments(info, card_number=card_number, **page)
