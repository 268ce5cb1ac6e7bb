from __future__ import annotations

import graphene

from citycard.graphql.core.permissions import PermissionsField
from citycard.graphql.core.types import NonNullList
from citycard.graphql.merchants import resolvers
from citycard.graphql.merchants.mutations.merchants import MerchantPay, MerchantRefundCreate
from citycard.graphql.merchants.types import MerchantPayment
from citycard.platform.scopes import Scope


class MerchantQueries(graphene.ObjectType):
    card_merchant_payments = PermissionsField(
        NonNullList(MerchantPayment),
        permissions=[Scope.MERCHANTS_READ],
        description="A card's merchant payments (商户消费), newest first (at most 100); empty when no card of "
        "this tenant has the number. Logged as a read of the cardholder's data.",
        card_number=graphene.String(required=True),
        limit=graphene.Int(default_value=20),
    )

    @staticmethod
    def resolve_card_merchant_payments(root, info, card_number, limit=20):
        return resolvers.resolve_card_merchant_payments(info, card_number=card_number, limit=limit)


class MerchantMutations(graphene.ObjectType):
    merchant_pay = MerchantPay.Field()
    merchant_refund = MerchantRefundCreate.Field()
