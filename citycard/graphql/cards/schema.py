from __future__ import annotations

import graphene

from citycard.graphql.cards import resolvers
from citycard.graphql.cards.mutations.cards import CardApply, CardReportLost
from citycard.graphql.cards.types import Card
from citycard.graphql.core.permissions import PermissionsField
from citycard.platform.scopes import Scope


class CardQueries(graphene.ObjectType):
    card = PermissionsField(
        Card,
        permissions=[Scope.CARDS_READ],
        description="A card of this tenant by its number: state, scheme, validity, applications, balances and "
        "transactions; null when no card of this tenant has the number. Logged as a read of the card's data "
        "against the caller.",
        number=graphene.String(required=True, description="The 19-digit card number."),
    )

    @staticmethod
    def resolve_card(root, info, number):
        return resolvers.resolve_card(info, number=number)


class CardMutations(graphene.ObjectType):
    card_report_lost = CardReportLost.Field()
    card_apply = CardApply.Field()
