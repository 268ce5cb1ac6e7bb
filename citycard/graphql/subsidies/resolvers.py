"""Subsidy reads for the tenant endpoint: thin over citycard.tenants.accounts.selectors."""

from __future__ import annotations

from typing import Any

from citycard.graphql.core.access import access_log_read
from citycard.graphql.core.connection import Key, keyset_page, pagination_check
from citycard.graphql.subsidies.types import SubsidyPaymentConnection
from citycard.graphql.terminals.resolvers import card_number_check
from citycard.tenants.accounts.models import SubsidyPayment
from citycard.tenants.accounts.selectors import subsidy_payments
from citycard.tenants.cards.selectors import card_get

# Newest run first, then the newest payment.
PAYMENT_KEYS = (Key("run__at", descending=True, kind="datetime"), Key("id", descending=True, kind="int"))


def resolve_subsidy_payments(info: Any, *, card_number: str, **page: Any) -> SubsidyPaymentConnection:
    """The payments to the holder of a card of this tenant (none for another tenant's or an anonymous
    card); logged as a read of the cardholder's data."""
    number = card_number_check(card_number)
    pagination_check(page.get("first"), page.get("last"))
    card = card_get(card_no=number)
    if card is None or card.cardholder_id is None:
        qs = SubsidyPayment.objects.none()
    else:
        qs = subsidy_payments(cardholder_id=card.cardholder_id)
    connection = keyset_page(qs, connection_type=SubsidyPaymentConnection, keys=PAYMENT_KEYS, **page)
    if card is not None and card.cardholder_id is not None:
        access_log_read(
            info, object_type="cardholder", object_ids=[card.cardholder_id], fields=["subsidy_payments"]
        )
    return connection
