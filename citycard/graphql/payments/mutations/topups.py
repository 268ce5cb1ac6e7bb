"""Opening a top-up order through a channel and refunding it: thin over citycard.tenants.payments.services."""

from __future__ import annotations

from typing import Any

import graphene

from citycard.graphql.cards.mutations.cards import REQUEST_KEY_MAX, card_number_valid, key_id_of
from citycard.graphql.core.mutations import BaseMutation, error_type
from citycard.graphql.payments.resolvers import resolve_topup_order
from citycard.graphql.payments.types import TopupOrder, TopupRefund
from citycard.platform.errors import DomainError, NotFound
from citycard.platform.scopes import Scope
from citycard.tenants.payments.services import topup_order_create, topup_order_refund

TopupOrderCreateError = error_type(
    "TopupOrderCreate",
    [
        "NO_CHANNEL",
        "NO_ACCOUNT",
        "CONFLICT",
        "CHANNEL_UNREACHABLE",
        "CHANNEL_PROTOCOL",
        "CHANNEL_BAD_SIGNATURE",
    ],
    "Why no order was opened (nothing was written): NO_CHANNEL, no active channel has that code; NO_ACCOUNT, "
    "the card has no online account; CONFLICT, the requestKey was used for another order; CHANNEL_*, the "
    "provider did not answer or its answer could not be trusted.",
)


class TopupOrderCreate(BaseMutation):
    order = graphene.Field(TopupOrder, description="The order with the provider's payment parameters.")
    error_fields = {"card_no": "card_number", "channel": "channel", "request_key": "request_key"}

    class Arguments:
        channel = graphene.String(required=True, description="The channel's code, e.g. wechat.")
        card_number = graphene.String(required=True)
        amount_fen = graphene.Int(required=True, description="The amount to top up, in fen.")
        request_key = graphene.String(
            required=True,
            description=f"The app's id of this top-up (1-{REQUEST_KEY_MAX} characters): a retry returns the "
            "same order with the same payment parameters. Keys are per API key.",
        )

    class Meta:
        description = (
            "Open a top-up of a card's online account (市民卡账户充值) through a payment channel and return the "
            "provider's payment parameters for the payer's app. The account is credited once when the "
            "provider's signed notification (or a query) says it was paid; ask topupOrder for the state."
        )
        permissions = [Scope.TOPUPS_CREATE]
        error_type_class = TopupOrderCreateError

    @classmethod
    def perform_mutation(
        cls, root: Any, info: Any, channel: str, card_number: str, amount_fen: int, request_key: str
    ) -> TopupOrderCreate:
        number = card_number_valid(card_number)
        key = (request_key or "").strip()
        if not 1 <= len(key) <= REQUEST_KEY_MAX:
            raise DomainError(f"requestKey must be 1-{REQUEST_KEY_MAX} characters", field="request_key")
        order = topup_order_create(
            channel_code=channel,
            card_no=number,
            amount_fen=amount_fen,
            request_key=f"{key_id_of(info)}:{key}",
            actor=cls.actor(info),
        )
        return cls(order=order, errors=[])


TopupOrderRefundError = error_type(
    "TopupOrderRefund",
    [
        "NOT_PAID",
        "OVER_REFUND",
        "INSUFFICIENT_FUNDS",
        "CONFLICT",
        "REFUND_REFUSED",
        "CHANNEL_UNREACHABLE",
        "CHANNEL_PROTOCOL",
        "CHANNEL_BAD_SIGNATURE",
    ],
    "Why nothing was refunded (nothing was written): NOT_FOUND, no order this API key opened has that number; "
    "NOT_PAID, the order was never credited; OVER_REFUND, refunds would exceed the top-up; INSUFFICIENT_FUNDS, "
    "the online account no longer holds the amount; CONFLICT, the requestKey was used for another refund; "
    "REFUND_REFUSED, the provider refused it; CHANNEL_*, the provider did not answer or its answer could not "
    "be trusted.",
)


class TopupOrderRefund(BaseMutation):
    refund = graphene.Field(TopupRefund, description="The refund, as the provider accepted it.")
    error_fields = {"out_trade_no": "order_no", "request_key": "request_key"}

    class Arguments:
        order_no = graphene.String(required=True, description="The order's number (from topupOrderCreate).")
        amount_fen = graphene.Int(required=True, description="The amount to give back, in fen.")
        request_key = graphene.String(
            required=True,
            description=f"The app's id of this refund (1-{REQUEST_KEY_MAX} characters): a retry returns the "
            "same refund and refunds nothing twice. Keys are per API key.",
        )
        reason = graphene.String(description="Why, as the provider shows it to the payer.")

    class Meta:
        description = (
            "Refund (part of) a top-up this API key opened back through its payment channel (充值退款): the "
            "online account is debited and the provider pays the payer back. Refused beyond what was topped "
            "up and not yet refunded, and beyond the account's balance."
        )
        permissions = [Scope.TOPUPS_CREATE]
        error_type_class = TopupOrderRefundError

    @classmethod
    def perform_mutation(
        cls, root: Any, info: Any, order_no: str, amount_fen: int, request_key: str, reason: str = ""
    ) -> TopupOrderRefund:
        key = (request_key or "").strip()
        if not 1 <= len(key) <= REQUEST_KEY_MAX:
            raise DomainError(f"requestKey must be 1-{REQUEST_KEY_MAX} characters", field="request_key")
        if resolve_topup_order(info, order_no=order_no) is None:
            raise NotFound("no top-up order of this API key has that number", field="out_trade_no")
        refund = topup_order_refund(
            out_trade_no=order_no,
            amount_fen=amount_fen,
            request_key=f"{key_id_of(info)}:{key}",
            actor=cls.actor(info),
            reason=(reason or "")[:200],
        )
        return cls(refund=refund, errors=[])
