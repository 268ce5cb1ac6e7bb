from __future__ import annotations

import graphene


class TopupOrder(graphene.ObjectType):
    """A top-up of a card's online account through a payment channel (渠道充值订单). Amounts in fen."""

    order_no = graphene.String(
        required=True, description="The order number the provider knows (out_trade_no)."
    )
    channel = graphene.String(required=True, description="The channel's code, e.g. wechat.")
    provider = graphene.String(required=True, description="bank, unionpay, wechat or alipay.")
    card_number = graphene.String(required=True)
    amount_fen = graphene.Int(required=True)
    state = graphene.String(required=True, description="created, paid (credited), mismatch or closed.")
    paid_fen = graphene.Int(description="What the provider says was paid; null before.")
    payment_params = graphene.JSONString(
        required=True,
        description="What the payer's app hands to the provider's SDK: WeChat Pay's signed APP parameters "
        "(prepayid, sign…), Alipay's signed order string, UnionPay's tn, the bank's pay token.",
    )
    created_at = graphene.DateTime(required=True)
    paid_at = graphene.DateTime()

    @staticmethod
    def resolve_order_no(root, info):
        return root.out_trade_no

    @staticmethod
    def resolve_channel(root, info):
        return root.channel.code

    @staticmethod
    def resolve_provider(root, info):
        return root.channel.provider

    @staticmethod
    def resolve_payment_params(root, info):
        return dict(sorted(root.payment_params.items()))  # the same text on a retry (jsonb reorders keys)

    @staticmethod
    def resolve_card_number(root, info):
        return root.card_no


class TopupRefund(graphene.ObjectType):
    """A refund of a top-up back through its channel (渠道退款). Amounts in fen."""

    refund_no = graphene.String(required=True, description="The refund number the provider knows.")
    order_no = graphene.String(required=True, description="The refunded order's number.")
    amount_fen = graphene.Int(required=True)
    state = graphene.String(
        required=True, description="succeeded (a refused refund is an error, not a refund)."
    )
    at = graphene.DateTime(required=True)

    @staticmethod
    def resolve_refund_no(root, info):
        return root.out_refund_no

    @staticmethod
    def resolve_order_no(root, info):
        return root.order.out_trade_no
