"""Card reads for the tenant endpoint: thin over citycard.tenants.cards.selectors."""

from __future__ import annotations

from typing import Any

from citycard.graphql.core.access import access_log_read
from citycard.graphql.terminals.resolvers import card_number_check
from citycard.tenants.cards.models import Card
from citycard.tenants.cards.selectors import card_get


def resolve_card(info: Any, *, number: str) -> Card | None:
    """One card of this tenant by its number (null when it is not one); logged as a read of the card."""
    card = card_get(card_no=card_number_check(number, "number"))
    if card is not None:
        access_log_read(info, object_type="card", object_ids=[card.card_no])
    return card
