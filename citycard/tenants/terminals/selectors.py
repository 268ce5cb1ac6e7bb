"""Reading terminals, batches and transactions."""

from __future__ import annotations

import datetime as dt

from django.db.models import Q, QuerySet

from citycard.tenants.terminals.models import Batch, ReviewFlag, TapException, Terminal, Transaction


def terminal_list(*, status: str | None = None) -> QuerySet[Terminal]:
    qs = Terminal.objects.prefetch_related("keys")
    return qs.filter(status=status) if status else qs


def batch_get(*, batch_id: str) -> Batch | None:
    return Batch.objects.select_related("terminal").filter(batch_id=batch_id).first()


def card_transactions(
    *, card_no: str, after: tuple[dt.datetime, int] | None = None, first: int = 50
) -> list[Transaction]:
    """A card's transactions newest first, keyset-paginated: ``after`` is the (tapped_at, id) of the last
    row of the previous page. Served by the index (card_no, tapped_at DESC, id DESC) in every partition."""
    qs = Transaction.objects.filter(card_no=card_no)
    if after is not None:
        at, tx_id = after
        qs = qs.filter(Q(tapped_at__lt=at) | Q(tapped_at=at, id__lt=tx_id))
    return list(qs.order_by("-tapped_at", "-id")[:first])


def roaming_transactions(
    *, issuer_tenant: str, start: dt.datetime, end: dt.datetime
) -> QuerySet[Transaction]:
    """Roaming taps on cards of ``issuer_tenant`` tapped in [start, end) (clearing, reconciliation)."""
    return Transaction.objects.filter(
        routing="roaming", issuer_tenant=issuer_tenant, tapped_at__gte=start, tapped_at__lt=end
    ).order_by("tapped_at", "id")


def open_flags(*, code: str | None = None) -> QuerySet[ReviewFlag]:
    qs = ReviewFlag.objects.filter(resolved_at__isnull=True)
    return qs.filter(code=code) if code else qs


def open_exceptions(*, kind: str | None = None) -> QuerySet[TapException]:
    qs = TapException.objects.filter(resolved_at__isnull=True)
    return qs.filter(kind=kind) if kind else qs
