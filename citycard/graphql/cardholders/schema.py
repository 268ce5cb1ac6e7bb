from __future__ import annotations

import graphene

from citycard.graphql.cardholders import resolvers
from citycard.graphql.cardholders.types import CardholderCategories, CardholderVerification
from citycard.graphql.core.permissions import PermissionsField
from citycard.platform.scopes import Scope


class CardholderQueries(graphene.ObjectType):
    cardholder_verify = PermissionsField(
        graphene.NonNull(CardholderVerification),
        permissions=[Scope.CARDHOLDERS_VERIFY],
        description="Whether a card of this tenant is held by the person with this resident ID number "
        "(实名核验): yes or no, never the ID number. Compared through the blind index; each attempt is "
        "logged against the caller.",
        card_number=graphene.String(required=True),
        id_number=graphene.String(required=True, description="18 characters (GB 11643); never returned."),
    )
    cardholder_categories = PermissionsField(
        CardholderCategories,
        permissions=[Scope.CARDHOLDERS_CATEGORIES],
        description="The rider categories of a card's holder (with validity) and the concessions they give "
        "under the published fare rules; null when no card of this tenant has the number. Logged as a read "
        "of the cardholder's data.",
        card_number=graphene.String(required=True),
        on_date=graphene.Date(description="As of this day (default: today, Asia/Shanghai)."),
    )

    @staticmethod
    def resolve_cardholder_verify(root, info, card_number, id_number):
        return resolvers.resolve_cardholder_verify(info, card_number=card_number, id_number=id_number)

    @staticmethod
    def resolve_cardholder_categories(root, info, card_number, on_date=None):
        return resolvers.resolve_cardholder_categories(info, card_number=card_number, on_date=on_date)
