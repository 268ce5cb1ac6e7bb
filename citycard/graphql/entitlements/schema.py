from __future__ import annotations

import graphene

from citycard.graphql.core.permissions import PermissionsField
from citycard.graphql.entitlements import resolvers
from citycard.graphql.entitlements.mutations.entitlements import AcceptanceCheck, EntitlementBuy
from citycard.graphql.entitlements.types import CardEntitlements
from citycard.platform.scopes import Scope


class EntitlementQueries(graphene.ObjectType):
    card_entitlements = PermissionsField(
        CardEntitlements,
        permissions=[Scope.ENTITLEMENTS_READ],
        description="The entitlements (权益) of a card's holder — library borrowing, park pass, elderly free "
        "entry… — with validity and source; null when no card of this tenant has the number. Logged as a read "
        "of the cardholder's data.",
        card_number=graphene.String(required=True),
        include_revoked=graphene.Boolean(default_value=False),
    )

    @staticmethod
    def resolve_card_entitlements(root, info, card_number, include_revoked=False):
        return resolvers.resolve_card_entitlements(
            info, card_number=card_number, include_revoked=include_revoked
        )


class EntitlementMutations(graphene.ObjectType):
    entitlement_buy = EntitlementBuy.Field()
    acceptance_check = AcceptanceCheck.Field()
