"""Entitlement reads for the tenant endpoint: thin over citycard.tenants.entitlements.selectors."""

from __future__ import annotations

from typing import Any

from citycard.graphql.core.access import access_log_read
from citycard.graphql.terminals.resolvers import card_number_check
from citycard.tenants.cards.selectors import card_get
from citycard.tenants.entitlements.selectors import entitlements_of


def resolve_card_entitlements(
    info: Any, *, card_number: str, include_revoked: bool = False
) -> dict[str, Any] | None:
    """Null when no card of this tenant has the number; logged as a read of the holder's data."""
    number = card_number_check(card_number)
    card = card_get(card_no=number)
    if card is None:
        return None
    if card.cardholder_id is None:
        return {"card_number": number, "entitlements": []}
    access_log_read(info, object_type="cardholder", object_ids=[card.cardholder_id], fields=["entitlements"])
    rows = list(entitlements_of(cardholder_id=card.cardholder_id, include_revoked=include_revoked))
    return {"card_number": number, "entitlements": rows}
