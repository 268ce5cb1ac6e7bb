from __future__ import annotations

import graphene

from citycard.graphql.core.types import global_id


class MerchantPayment(graphene.ObjectType):
    """A payment a merchant took (商户收款) from a card: by the online account, a citizen code or the e-purse."""

    id = graphene.ID(required=True)
    merchant = graphene.String(required=True, description="The merchant's code.")
    merchant_name = graphene.String(required=True)
    means = graphene.String(required=True, description="account, code or purse.")
    amount_fen = graphene.Int(required=True)
    refunded_fen = graphene.Int(required=True, description="Refunded so far (never more than amountFen).")
    paid_at = graphene.DateTime(required=True)
    settled = graphene.Boolean(required=True, description="Whether the merchant's settlement carried it yet.")

    @staticmethod
    def resolve_id(root, info):
        return global_id("MerchantPayment", root.pk)

    @staticmethod
    def resolve_merchant(root, info):
        return root.merchant.code

    @staticmethod
    def resolve_merchant_name(root, info):
        return root.merchant.name

    @staticmethod
    def resolve_paid_at(root, info):
        return root.at

    @staticmethod
    def resolve_settled(root, info):
        return root.settlement.settled_at is not None


class MerchantRefund(graphene.ObjectType):
    """A refund (退款) of a payment, to the payer's online account."""

    id = graphene.ID(required=True)
    amount_fen = graphene.Int(required=True)
    refunded_at = graphene.DateTime(required=True)
    payment = graphene.Field(MerchantPayment, required=True)

    @staticmethod
    def resolve_id(root, info):
        return global_id("MerchantRefund", root.pk)

    @staticmethod
    def resolve_refunded_at(root, info):
        return root.at
