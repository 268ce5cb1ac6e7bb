"""Merchant payment reads for the tenant endpoint: thin over citycard.tenants.merchants.selectors."""

from __future__ import annotations

from typing import Any

from citycard.graphql.core.access import access_log_read
from citycard.graphql.terminals.resolvers import card_number_check
from citycard.tenants.cards.selectors import card_get
from citycard.tenants.merchants.selectors import payments_of_card


def resolve_card_merchant_payments(info: Any, *, card_number: str, limit: int) -> list[Any]:
    """Empty when no card of this tenant has the number; logged as a read of the holder's data."""
    number = card_number_check(card_number)
    card = card_get(card_no=number)
    if card is None:
        return []
    if card.cardholder_id is not None:
        access_log_read(info, object_type="cardholder", object_ids=[card.cardholder_id], fields=["payments"])
    return list(payments_of_card(card_nos=[number], limit=max(1, min(limit, 100))))
