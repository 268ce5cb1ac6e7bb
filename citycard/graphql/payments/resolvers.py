"""Top-up order reads for the tenant endpoint: an API key sees only the orders it opened."""

from __future__ import annotations

from typing import Any

from citycard.graphql.cards.mutations.cards import key_id_of
from citycard.tenants.payments.models import TopupOrder


def resolve_topup_order(info: Any, *, order_no: str) -> TopupOrder | None:
    order = TopupOrder.objects.select_related("channel").filter(out_trade_no=order_no).first()
    if order is None or not order.request_key.startswith(f"{key_id_of(info)}:"):
        return None
    return order
