"""Reading the settled cycles booked on this ledger and their differences."""

from __future__ import annotations

from django.db.models import QuerySet

from citycard.tenants.settlement.models import CycleSettlement, SettlementDifference


def cycle_settlements(*, limit: int = 50) -> list[CycleSettlement]:
    """The latest cycles booked, newest first, with their postings (one query)."""
    return list(CycleSettlement.objects.select_related("posting").order_by("-booked_at", "-id")[:limit])


def settlement_differences(
    *, open_only: bool = False, cycle: str | None = None
) -> QuerySet[SettlementDifference]:
    """The differences between settled files and the ledger, by cycle and record (open ones only, or one
    cycle's)."""
    found = SettlementDifference.objects.select_related("settlement").order_by(
        "settlement__cycle", "record_id"
    )
    if open_only:
        found = found.filter(resolved_at__isnull=True)
    if cycle is not None:
        found = found.filter(settlement__cycle=cycle)
    return found
