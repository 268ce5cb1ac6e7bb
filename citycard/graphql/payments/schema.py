from __future__ import annotations

import graphene

from citycard.graphql.core.permissions import PermissionsField
from citycard.graphql.payments import resolvers
from citycard.graphql.payments.mutations.topups import TopupOrderCreate, TopupOrderRefund
from citycard.graphql.payments.types import TopupOrder
from citycard.platform.scopes import Scope


class PaymentQueries(graphene.ObjectType):
    topup_order = PermissionsField(
        TopupOrder,
        permissions=[Scope.TOPUPS_CREATE],
        description="A top-up order this API key opened, by its order number; null for any other.",
        order_no=graphene.String(required=True),
    )

    @staticmethod
    def resolve_topup_order(root, info, order_no):
        return resolvers.resolve_topup_order(info, order_no=order_no)


class PaymentMutations(graphene.ObjectType):
    topup_order_create = TopupOrderCreate.Field()
    topup_order_refund = TopupOrderRefund.Field()
