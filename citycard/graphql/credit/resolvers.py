"""Credit reads for the tenant endpoint: thin over citycard.tenants.credit.selectors."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from citycard.graphql.core.access import access_log_read
from citycard.graphql.terminals.resolvers import card_number_check
from citycard.tenants.credit import selectors
from citycard.tenants.credit.models import CreditLine


def _line(info: Any, card_number: str, field: str) -> CreditLine | None:
    number = card_number_check(card_number)
    line = CreditLine.objects.select_related("receivable").filter(card_no=number).first()
    if line is not None:
        access_log_read(info, object_type="cardholder", object_ids=[line.cardholder_id], fields=[field])
    return line


def resolve_credit_bill(info: Any, *, card_number: str, month: str | None) -> Any:
    """The card's bill of ``month`` (or its latest); null when no card of this tenant has a line."""
    line = _line(info, card_number, "credit_bill")
    if line is None:
        return None
    return selectors.bill_of(card_no=line.card_no, month=month)


def resolve_credit_history(info: Any, *, card_number: str, limit: int) -> Any:
    line = _line(info, card_number, "credit_history")
    if line is None:
        return None
    owed = selectors.owed_fen(line)
    return SimpleNamespace(
        state=line.state,
        limit_fen=line.limit_fen,
        owed_fen=owed,
        available_fen=max(line.limit_fen - owed, 0),
        entries=selectors.history(card_no=line.card_no, limit=max(1, min(limit, 100))),
    )
