"""Paying a merchant from the online account and refunding: thin over citycard.tenants.merchants.services.
The app's request keys are per API key: a payment made with one key is refunded with the same key."""

from __future__ import annotations

from typing import Any

import graphene

from citycard.graphql.cards.mutations.cards import REQUEST_KEY_MAX, card_number_valid, key_id_of
from citycard.graphql.core.mutations import BaseMutation, error_type
from citycard.graphql.merchants.types import MerchantPayment, MerchantRefund
from citycard.platform.errors import DomainError
from citycard.platform.scopes import Scope
from citycard.tenants.merchants.services import merchant_pay, payment_refund

MerchantPayError = error_type(
    "MerchantPay",
    [
        "MERCHANT_NOT_ACTIVE",
        "MEANS_NOT_ACCEPTED",
        "INSUFFICIENT_FUNDS",
        "NO_ACCOUNT",
        "CODE_REFUSED",
        "CONFLICT",
    ],
    "Why nothing was paid (nothing was written): NOT_FOUND, no such merchant here.",
)
MerchantRefundError = error_type(
    "MerchantRefund",
    ["OVER_REFUND", "ROAMING_REFUND", "NO_ACCOUNT", "CONFLICT"],
    "Why nothing was refunded: OVER_REFUND, refunds would exceed the payment; NOT_FOUND, no payment of this "
    "key with that id.",
)


def _key(value: str | None, field: str) -> str:
    key = (value or "").strip()
    if not 1 <= len(key) <= REQUEST_KEY_MAX:
        raise DomainError(f"{field} must be 1-{REQUEST_KEY_MAX} characters", field=field)
    return key


class MerchantPay(BaseMutation):
    payment = graphene.Field(MerchantPayment, description="The payment (the first, on a retry).")
    error_fields = {"card_no": "card_number", "payment_id": "request_key", "merchant": "merchant"}

    class Arguments:
        merchant = graphene.String(required=True, description="The merchant's code, e.g. school-12-canteen.")
        amount_fen = graphene.Int(required=True)
        request_key = graphene.String(
            required=True,
            description=f"The app's id of this payment (1-{REQUEST_KEY_MAX} characters): a retry returns the "
            "first payment and pays nothing again. Keys are per API key.",
        )
        card_number = graphene.String(description="The paying card (its online account).")
        citizen_code = graphene.String(
            description="Or the payer's electronic citizen code (电子市民码) as scanned."
        )

    class Meta:
        description = (
            "Pay a merchant (canteen, car park, shop…) from a card's online account (市民卡账户), the card given "
            "by number or by the citizen code the merchant scanned; refused beyond the balance."
        )
        permissions = [Scope.MERCHANTS_PAY]
        error_type_class = MerchantPayError

    @classmethod
    def perform_mutation(
        cls,
        root: Any,
        info: Any,
        merchant: str,
        amount_fen: int,
        request_key: str,
        card_number: str | None = None,
        citizen_code: str | None = None,
    ) -> MerchantPay:
        key = _key(request_key, "request_key")
        payment = merchant_pay(
            merchant_code=merchant,
            amount_fen=amount_fen,
            payment_id=f"{key_id_of(info)}:{key}",
            card_no=card_number_valid(card_number) if card_number is not None else None,
            citizen_code=citizen_code,
            actor=cls.actor(info),
        )
        return cls(payment=payment, errors=[])


class MerchantRefundCreate(BaseMutation):
    refund = graphene.Field(MerchantRefund, description="The refund (the first, on a retry).")
    error_fields = {"payment_id": "payment_key", "refund_id": "refund_key"}

    class Arguments:
        payment_key = graphene.String(required=True, description="The requestKey the payment was made with.")
        refund_key = graphene.String(
            required=True, description="The app's id of this refund: a retry refunds once. Per API key."
        )
        amount_fen = graphene.Int(required=True, description="In full or in part; refunds never total more.")

    class Meta:
        description = (
            "Refund (退款) a payment this API key made, in full or in part, to the payer's online account."
        )
        permissions = [Scope.MERCHANTS_REFUND]
        error_type_class = MerchantRefundError

    @classmethod
    def perform_mutation(
        cls, root: Any, info: Any, payment_key: str, refund_key: str, amount_fen: int
    ) -> MerchantRefundCreate:
        prefix = key_id_of(info)
        refund = payment_refund(
            payment_id=f"{prefix}:{_key(payment_key, 'payment_key')}",
            refund_id=f"{prefix}:{_key(refund_key, 'refund_key')}",
            amount_fen=amount_fen,
            actor=cls.actor(info),
        )
        return cls(refund=refund, errors=[])
