"""Reading terminals, batches and transactions."""

from __future__ import annotations

import datetime as dt

from django.db.models import Count, Q, QuerySet

from citycard.tenants.terminals.models import Journey, Terminal, Transaction


def terminal_list(*, status: str | None = None) -> QuerySet[Terminal]:
    qs = Terminal.objects.prefetch_related("keys")
    return qs.filter(status=status) if status else qs


def transactions_query(
    *,
    card_no: str | None = None,
    terminal_id: str | None = None,
    tapped_from: dt.datetime | None = None,
    tapped_to: dt.datetime | None = None,
    routing: str | None = None,
) -> QuerySet[Transaction]:
    """Transactions filtered by card, terminal, tap time in [tapped_from, tapped_to) and routing; unordered.
    Paged newest first by (tapped_at, id): ``card_transactions`` here, the GraphQL connections with cursors
    (a card's pages are served by the index (card_no, tapped_at DESC, id DESC) in every partition)."""
    qs = Transaction.objects.all()
    if card_no is not None:
        qs = qs.filter(card_no=card_no)
    if terminal_id:
        qs = qs.filter(terminal_id=terminal_id)
    if tapped_from is not None:
        qs = qs.filter(tapped_at__gte=tapped_from)
    if tapped_to is not None:
        qs = qs.filter(tapped_at__lt=tapped_to)
    if routing:
        qs = qs.filter(routing=routing)
    return qs


def card_transactions(
    *, card_no: str, after: tuple[dt.datetime, int] | None = None, first: int = 50
) -> list[Transaction]:
    """A card's transactions newest first, keyset-paginated: ``after`` is the (tapped_at, id) of the last
    row of the previous page. Served by the index (card_no, tapped_at DESC, id DESC) in every partition."""
    qs = transactions_query(card_no=card_no)
    if after is not None:
        at, tx_id = after
        qs = qs.filter(Q(tapped_at__lt=at) | Q(tapped_at=at, id__lt=tx_id))
    return list(qs.order_by("-tapped_at", "-id")[:first])


def journeys_released(*, at: dt.datetime) -> dict[str, int]:
    """{routing: how many} of the half journeys the release run at ``at`` released (半程超时释放)."""
    rows = Journey.objects.filter(released_at=at).values_list("routing").annotate(n=Count("id"))
    return dict(rows.order_by())


def cards_last_taps(*, card_nos: list[str]) -> dict[str, tuple[int, int]]:
    """{card: (card counter, balance after)} of each card's highest-counter tap stored in this schema, for the
    cards that have one: where a chip that tapped here before carries on from (the demo's cards, ridden again
    on a re-run). A ride paid by the citizen code (fare medium 04) wrote no chip: its counter and balance are
    not the chip's, so it is left out. One query (``DISTINCT ON`` over the card-history index)."""
    if not card_nos:
        return {}
    rows = (
        Transaction.objects.filter(card_no__in=set(card_nos))
        .exclude(card_scheme="04")  # checks.ONLINE_MEDIA: no chip counter
        .order_by("card_no", "-card_counter", "-id")
        .distinct("card_no")
        .values_list("card_no", "card_counter", "balance_after_fen")
    )
    return {card_no: (counter, balance) for card_no, counter, balance in rows}
