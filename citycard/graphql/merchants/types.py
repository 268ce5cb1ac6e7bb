from __future__ import annotations

import graphene

from citycard.graphql.core.types import global_id
from citycard.tenants.credit.models import RoamingPayment


class MerchantPayment(graphene.ObjectType):
    """A payment a merchant took (商户收款) from a card: by the online account, a citizen code or the e-purse;
    or a payment the card made by citizen code at another city's merchant (异地商户扫码支付, ``acquirer``
    set), booked here against the card when clearing accepted it."""

    id = graphene.ID(required=True)
    merchant = graphene.String(required=True, description="The merchant's code (in the acquirer's city).")
    merchant_name = graphene.String(required=True)
    means = graphene.String(required=True, description="account, code or purse.")
    amount_fen = graphene.Int(required=True)
    refunded_fen = graphene.Int(required=True, description="Refunded so far (never more than amountFen).")
    paid_at = graphene.DateTime(required=True)
    settled = graphene.Boolean(
        required=True,
        description="Whether the merchant's settlement carried it yet (another city's merchant: true, booked).",
    )
    acquirer = graphene.String(
        description="The city whose merchant took it, for a payment in another city; null: a merchant here."
    )

    @staticmethod
    def resolve_id(root, info):
        return global_id("RoamingPayment" if isinstance(root, RoamingPayment) else "MerchantPayment", root.pk)

    @staticmethod
    def resolve_merchant(root, info):
        return root.merchant if isinstance(root, RoamingPayment) else root.merchant.code

    @staticmethod
    def resolve_merchant_name(root, info):
        return root.payee if isinstance(root, RoamingPayment) else root.merchant.name

    @staticmethod
    def resolve_means(root, info):
        return "code" if isinstance(root, RoamingPayment) else root.means

    @staticmethod
    def resolve_refunded_fen(root, info):
        return 0 if isinstance(root, RoamingPayment) else root.refunded_fen

    @staticmethod
    def resolve_paid_at(root, info):
        return root.paid_at if isinstance(root, RoamingPayment) else root.at

    @staticmethod
    def resolve_settled(root, info):
        return True if isinstance(root, RoamingPayment) else root.settlement.settled_at is not None

    @staticmethod
    def resolve_acquirer(root, info):
        return root.acquirer if isinstance(root, RoamingPayment) else None


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
