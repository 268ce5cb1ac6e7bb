from __future__ import annotations

import graphene

from citycard.graphql.core.permissions import PermissionsField
from citycard.graphql.credit import resolvers
from citycard.graphql.credit.mutations.credit import CreditPay
from citycard.graphql.credit.types import CreditBill, CreditHistory
from citycard.platform.scopes import Scope


class CreditQueries(graphene.ObjectType):
    credit_bill = PermissionsField(
        CreditBill,
        permissions=[Scope.CREDIT_READ],
        description="A card's monthly credit bill (信用付月度账单) with its items: of ``month`` (YYYY-MM) or the "
        "latest; null when no card of this tenant has a credit line or no bill. Logged as a read of the "
        "cardholder's data.",
        card_number=graphene.String(required=True),
        month=graphene.String(),
    )
    credit_history = PermissionsField(
        CreditHistory,
        permissions=[Scope.CREDIT_READ],
        description="A card's credit line (limit, owed, available) and its movements, newest first (at most "
        "100); null when no card of this tenant has a credit line. Logged as a read of the cardholder's data.",
        card_number=graphene.String(required=True),
        limit=graphene.Int(default_value=20),
    )

    @staticmethod
    def resolve_credit_bill(root, info, card_number, month=None):
        return resolvers.resolve_credit_bill(info, card_number=card_number, month=month)

    @staticmethod
    def resolve_credit_history(root, info, card_number, limit=20):
        return resolvers.resolve_credit_history(info, card_number=card_number, limit=limit)


class CreditMutations(graphene.ObjectType):
    credit_pay = CreditPay.Field()
