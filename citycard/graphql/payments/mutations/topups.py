"""Opening a top-up order through a channel: thin over citycard.tenants.payments.services."""

from __future__ import annotations

from typing import Any

import graphene

from citycard.graphql.cards.mutations.cards import REQUEST_KEY_MAX, card_number_valid, key_id_of
from citycard.graphql.core.mutations import BaseMutation, error_type
from citycard.graphql.payments.types import TopupOrder
from citycard.platform.errors import DomainError
from citycard.platform.scopes import Scope
from citycard.tenants.payments.services import topup_order_create

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
