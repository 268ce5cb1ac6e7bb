"""Merchant payment reads for the tenant endpoint: thin over citycard.tenants.merchants.selectors."""

from __future__ import annotations

from typing import Any

from citycard.graphql.core.access import access_log_read
from citycard.graphql.terminals.resolvers import card_number_check
from citycard.tenants.cards.selectors import card_get
from citycard.tenants.credit.models import RoamingPayment
from citycard.tenants.credit.selectors import roaming_payments_of_card
from citycard.tenants.merchants.selectors import payments_of_card


def resolve_card_merchant_payments(info: Any, *, card_number: str, limit: int) -> list[Any]:
    """Empty when no card of this tenant has the number; logged as a read of the holder's data. The card's
    payments at this city's merchants and its citizen-code payments at other cities' merchants, newest
    first."""
    number = card_number_check(card_number)
    card = card_get(card_no=number)
    if card is None:
        return []
    if card.cardholder_id is not None:
        access_log_read(info, object_type="cardholder", object_ids=[card.cardholder_id], fields=["payments"])
    limit = max(1, min(limit, 100))
    # here, and by citizen code at other cities' merchants (booked here when clearing accepted them)
    found: list[Any] = [
        *payments_of_card(card_nos=[number], limit=limit),
        *roaming_payments_of_card(card_nos=[number], limit=limit),
    ]
    found.sort(key=lambda p: (p.paid_at if isinstance(p, RoamingPayment) else p.at, p.pk), reverse=True)
    return found[:limit]
