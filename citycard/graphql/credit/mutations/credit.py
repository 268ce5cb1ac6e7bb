"""Paying a merchant on credit (信用付): thin over citycard.tenants.credit.services. Request keys are per API
key, as for merchantPay."""

from __future__ import annotations

from typing import Any

import graphene

from citycard.graphql.cards.mutations.cards import card_number_valid, key_id_of
from citycard.graphql.core.mutations import BaseMutation, error_type
from citycard.graphql.credit.types import CreditItem
from citycard.graphql.merchants.mutations.merchants import _key
from citycard.platform.scopes import Scope
from citycard.tenants.credit.services import credit_pay

CreditPayError = error_type(
    "CreditPay",
    [
        "NO_CREDIT_LINE",
        "LINE_NOT_ACTIVE",
        "OVER_LIMIT",
        "MERCHANT_NOT_ACTIVE",
        "MEANS_NOT_ACCEPTED",
        "CONFLICT",
    ],
    "Why nothing was paid (nothing was written): NOT_FOUND, no such merchant here.",
)


class CreditPay(BaseMutation):
    item = graphene.Field(CreditItem, description="The item on the credit line (the first, on a retry).")
    error_fields = {"card_no": "card_number", "payment_id": "request_key", "merchant": "merchant"}

    class Arguments:
        merchant = graphene.String(required=True, description="The merchant's code; it must accept credit.")
        card_number = graphene.String(required=True, description="The card whose credit line pays.")
        amount_fen = graphene.Int(required=True)
        request_key = graphene.String(
            required=True,
            description="The app's id of this payment: a retry returns the first and pays nothing again.",
        )

    class Meta:
        description = (
            "Pay a merchant on credit (信用付): the merchant is paid now, the cardholder owes it on the month's "
            "bill; refused beyond the available limit or on a suspended line."
        )
        permissions = [Scope.CREDIT_PAY]
        error_type_class = CreditPayError

    @classmethod
    def perform_mutation(
        cls, root: Any, info: Any, merchant: str, card_number: str, amount_fen: int, request_key: str
    ) -> CreditPay:
        item = credit_pay(
            merchant_code=merchant,
            card_no=card_number_valid(card_number),
            amount_fen=amount_fen,
            payment_id=f"{key_id_of(info)}:{_key(request_key, 'request_key')}",
            actor=cls.actor(info),
        )
        return cls(item=item, errors=[])
