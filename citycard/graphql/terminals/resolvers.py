"""Terminal and transaction reads for the tenant endpoint: thin over citycard.tenants.terminals."""

from __future__ import annotations

import datetime as dt
from typing import Any

from citycard.graphql.core.access import access_log_list, access_log_read
from citycard.graphql.core.connection import Key, keyset_page
from citycard.graphql.core.errors import ApiError, ApiErrorCode
from citycard.graphql.core.types import enum_value
from citycard.graphql.terminals.types import TerminalConnection, TransactionConnection
from citycard.tenants.terminals.models import Terminal
from citycard.tenants.terminals.selectors import transactions_query
from citycard.terminal_kit.cardno import CardNumberError, card_number_clean

TERMINAL_KEYS = (Key("terminal_id"),)
# Newest first, served by the index (card_no, tapped_at DESC, id DESC) of every month partition.
TRANSACTION_KEYS = (
    Key("tapped_at", descending=True, kind="datetime"),
    Key("id", descending=True, kind="int"),
)


def card_number_check(value: str, argument: str = "cardNumber") -> str:
    """A card-number argument of a query, by the one check (``terminal_kit.cardno.card_number_clean``)."""
    try:
        return card_number_clean(value or "")
    except CardNumberError as exc:
        raise ApiError(f"{argument} {exc}", ApiErrorCode.INVALID_ARGUMENT, argument=argument) from exc


def _time_range(tapped_from: dt.datetime | None, tapped_to: dt.datetime | None) -> None:
    if tapped_from is not None and tapped_to is not None and tapped_from >= tapped_to:
        raise ApiError(
            f"tappedFrom {tapped_from.isoformat()} is not before tappedTo {tapped_to.isoformat()}",
            ApiErrorCode.INVALID_ARGUMENT,
            argument="tappedFrom",
        )


def resolve_terminals(info: Any, *, status: str | None = None, service: str | None = None, **page: Any):
    qs = Terminal.objects.all()
    if status:
        qs = qs.filter(status=enum_value(status))
    if service:
        qs = qs.filter(service=service)
    return keyset_page(qs, connection_type=TerminalConnection, keys=TERMINAL_KEYS, **page)


def resolve_terminal(info: Any, *, terminal_id: str) -> Terminal | None:
    return Terminal.objects.filter(terminal_id=terminal_id).first()


def resolve_transactions(
    info: Any,
    *,
    card_number: str | None = None,
    terminal_id: str | None = None,
    tapped_from: dt.datetime | None = None,
    tapped_to: dt.datetime | None = None,
    routing: str | None = None,
    **page: Any,
):
    _time_range(tapped_from, tapped_to)
    qs = transactions_query(
        card_no=None if card_number is None else card_number_check(card_number, "filter.cardNumber"),
        terminal_id=terminal_id,
        tapped_from=tapped_from,
        tapped_to=tapped_to,
        routing=enum_value(routing) if routing else None,
    )
    connection = keyset_page(qs, connection_type=TransactionConnection, keys=TRANSACTION_KEYS, **page)
    if card_number is not None:
        access_log_read(info, object_type="card_transactions", object_ids=[card_number.strip()])
    else:
        # Any page of taps is a read of the cards tapped: logged with the filters and the cards on it.
        access_log_list(
            info,
            object_type="transactions",
            object_ids=[edge.node.card_no for edge in connection.edges],
            rows=len(connection.edges),
            asked={
                "terminalId": terminal_id,
                "tappedFrom": tapped_from,
                "tappedTo": tapped_to,
                "routing": str(enum_value(routing)) if routing else None,
                **{name: page.get(name) for name in ("first", "last", "after", "before")},
            },
        )
    return connection


def resolve_card_transactions(info: Any, *, card_number: str, **kwargs: Any):
    """A card's history, newest first; logged as a read of that card's data."""
    return resolve_transactions(info, card_number=card_number_check(card_number), **kwargs)
