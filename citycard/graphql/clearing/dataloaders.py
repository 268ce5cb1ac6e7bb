"""Per-request loaders of what clearing cycles produced: one query per loader and batch of cycles, so a
page of cycles costs the same whatever its size. Thin over citycard.interop.selectors."""

from __future__ import annotations

from typing import Any

from citycard.graphql.core.connection import Key, PageArgs, keyset_pages
from citycard.graphql.core.dataloaders import DataLoader, by_key, grouped
from citycard.interop import selectors
from citycard.interop.models import (
    AgreementVersion,
    BilateralPosition,
    ClearingCycle,
    Dispute,
    NetPosition,
    ReconciliationFile,
    SettlementInstruction,
)

RECORD_KEYS = (Key("record_id"),)


class VersionsByAgreementLoader(DataLoader[int, list[AgreementVersion]]):
    """Every version of each agreement, by effective date then number (one query per batch)."""

    def batch_load(self, keys: list[int]) -> list[list[AgreementVersion]]:
        return grouped(
            selectors.agreement_versions().filter(agreement_id__in=set(keys)), keys, "agreement_id"
        )


class CycleByIdLoader(DataLoader[int, ClearingCycle | None]):
    def batch_load(self, keys: list[int]) -> list[ClearingCycle | None]:
        return by_key(selectors.cycles_query().filter(pk__in=set(keys)), keys, "pk")


class RecordTotalsByCycleLoader(DataLoader[int, dict[str, tuple[int, int]]]):
    """Records and amount by status, per cycle (one GROUP BY)."""

    def batch_load(self, keys: list[int]) -> list[dict[str, tuple[int, int]]]:
        totals = selectors.cycle_record_totals(cycle_ids=keys)
        return [totals[key] for key in keys]


# ``bilateralMatrix`` lists every cell up to this many (a network of 32 has 992); a larger matrix (a national
# network's ~90,000) is paged by ``bilateralCells`` or narrowed to an issuer or an acquirer.
MATRIX_LIST_MAX = 1000
CELL_KEYS = {
    "issuer_acquirer": (Key("issuer"), Key("acquirer")),
    "amount_desc": (Key("amount_fen", descending=True, kind="int"), Key("issuer"), Key("acquirer")),
}
CellFilters = tuple[str | None, str | None]  # issuer, acquirer


class MatrixByCycleLoader(DataLoader[tuple[int, CellFilters], list[BilateralPosition] | None]):
    """Each cycle's cells (of an issuer or an acquirer), or None when more than ``MATRIX_LIST_MAX``: one
    query per distinct filter in the batch, reading at most ``MATRIX_LIST_MAX + 1`` cells a cycle."""

    def batch_load(self, keys: list[tuple[int, CellFilters]]) -> list[list[BilateralPosition] | None]:
        found: dict[tuple[int, CellFilters], list[BilateralPosition] | None] = {}
        asks: dict[CellFilters, list[int]] = {}
        for cycle_id, filters in keys:
            asks.setdefault(filters, []).append(cycle_id)
        for (issuer, acquirer), cycle_ids in asks.items():
            cells = selectors.bilateral_capped(
                cycle_ids=set(cycle_ids), cap=MATRIX_LIST_MAX, issuer=issuer, acquirer=acquirer
            )
            for cycle_id in cycle_ids:
                found[(cycle_id, (issuer, acquirer))] = cells[cycle_id]
        return [found[key] for key in keys]


class CellPagesLoader(DataLoader[tuple[int, PageArgs, CellFilters, str], Any]):
    """A page of a cycle's bilateral matrix (by issuer and acquirer, or largest amount first), for each
    cycle asking: one query per distinct (page, filters, order) in the batch (ROW_NUMBER() per cycle)."""

    def batch_load(self, keys: list[tuple[int, PageArgs, CellFilters, str]]) -> list[Any]:
        from citycard.graphql.clearing.types import BilateralPositionConnection

        found: dict[tuple[int, PageArgs, CellFilters, str], Any] = {}
        asks: dict[tuple[PageArgs, CellFilters, str], list[int]] = {}
        for cycle_id, page, filters, order in keys:
            asks.setdefault((page, filters, order), []).append(cycle_id)
        for (page, (issuer, acquirer), order), cycle_ids in asks.items():
            parents = list(dict.fromkeys(cycle_ids))
            pages = keyset_pages(
                selectors.bilateral_of(cycle_ids=parents, issuer=issuer, acquirer=acquirer),
                parent_field="cycle_id",
                parents=parents,
                connection_type=BilateralPositionConnection,
                keys=CELL_KEYS[order],
                page=page,
            )
            for cycle_id, connection in zip(parents, pages, strict=True):
                found[(cycle_id, page, (issuer, acquirer), order)] = connection
        return [found[key] for key in keys]


class NetPositionsByCycleLoader(DataLoader[int, list[NetPosition]]):
    def batch_load(self, keys: list[int]) -> list[list[NetPosition]]:
        return grouped(selectors.net_positions_of(cycle_ids=keys), keys, "cycle_id")


class InstructionsByCycleLoader(DataLoader[int, list[SettlementInstruction]]):
    def batch_load(self, keys: list[int]) -> list[list[SettlementInstruction]]:
        return grouped(selectors.instructions_of(cycle_ids=keys), keys, "cycle_id")


class ReconciliationFilesByCycleLoader(DataLoader[int, list[ReconciliationFile]]):
    def batch_load(self, keys: list[int]) -> list[list[ReconciliationFile]]:
        return grouped(selectors.reconciliation_files_of(cycle_ids=keys), keys, "cycle_id")


class DisputesByCycleLoader(DataLoader[int, list[Dispute]]):
    """Disputes of the cycles' records (with the record and its adjustment), newest first."""

    def batch_load(self, keys: list[int]) -> list[list[Dispute]]:
        groups: dict[int, list[Dispute]] = {key: [] for key in keys}
        for dispute in selectors.disputes_query(cycle_ids=keys).order_by("-id"):
            groups[dispute.record.cycle_id].append(dispute)
        return [groups[key] for key in keys]


# ``exceptionSummary`` lists every group up to this many (a 20-city cycle of 1M records has ~1,500 rejections in
# ≤ 380 groups); a larger summary (a 300-participant cycle of 1M records has ~18,000 groups) is paged by
# ``exceptionGroups`` or narrowed to an issuer, an acquirer or a reason.
EXCEPTION_LIST_MAX = 1000
EXCEPTION_KEYS = (Key("issuer"), Key("acquirer"), Key("reason"))
ExceptionFilters = tuple[str | None, str | None, str | None]  # issuer, acquirer, reason


class ExceptionSummaryByCycleLoader(DataLoader[tuple[int, ExceptionFilters], list[Any] | None]):
    """Each cycle's exception groups (of an issuer, acquirer or reason), or None when more than
    ``EXCEPTION_LIST_MAX``: one query per distinct filter in the batch, handing back at most
    ``EXCEPTION_LIST_MAX + 1`` groups a cycle."""

    def batch_load(self, keys: list[tuple[int, ExceptionFilters]]) -> list[list[Any] | None]:
        from citycard.graphql.clearing.types import ExceptionGroup

        found: dict[tuple[int, ExceptionFilters], list[Any] | None] = {}
        asks: dict[ExceptionFilters, list[int]] = {}
        for cycle_id, filters in keys:
            asks.setdefault(filters, []).append(cycle_id)
        for filters, cycle_ids in asks.items():
            issuer, acquirer, reason = filters
            groups = selectors.exception_summary_capped(
                cycle_ids=set(cycle_ids),
                cap=EXCEPTION_LIST_MAX,
                issuer=issuer,
                acquirer=acquirer,
                reason=reason,
            )
            for cycle_id in cycle_ids:
                rows = groups[cycle_id]
                found[(cycle_id, filters)] = (
                    None
                    if rows is None
                    else [ExceptionGroup(**{k: v for k, v in row.items() if k != "cycle_id"}) for row in rows]
                )
        return [found[key] for key in keys]


class ExceptionGroupPagesLoader(DataLoader[tuple[int, PageArgs, ExceptionFilters], Any]):
    """A page of each asking cycle's exception groups by issuer, acquirer and reason (keyset cursors over
    the three): one aggregate query per distinct (page, filters) in the batch (ROW_NUMBER() per cycle)."""

    def batch_load(self, keys: list[tuple[int, PageArgs, ExceptionFilters]]) -> list[Any]:
        from citycard.graphql.clearing.types import ExceptionGroupConnection

        found: dict[tuple[int, PageArgs, ExceptionFilters], Any] = {}
        asks: dict[tuple[PageArgs, ExceptionFilters], list[int]] = {}
        for cycle_id, page, filters in keys:
            asks.setdefault((page, filters), []).append(cycle_id)
        for (page, filters), cycle_ids in asks.items():
            parents = list(dict.fromkeys(cycle_ids))
            issuer, acquirer, reason = filters
            pages = keyset_pages(
                selectors.exception_groups_of(
                    cycle_ids=parents, issuer=issuer, acquirer=acquirer, reason=reason
                ),
                parent_field="cycle_id",
                parents=parents,
                connection_type=ExceptionGroupConnection,
                keys=EXCEPTION_KEYS,
                page=page,
            )
            for cycle_id, connection in zip(parents, pages, strict=True):
                found[(cycle_id, page, filters)] = connection
        return [found[key] for key in keys]


RecordFilters = tuple[str | None, str | None, str | None, str | None]  # issuer, acquirer, status, reason


class RecordPagesLoader(DataLoader[tuple[int, PageArgs, RecordFilters], Any]):
    """A page of records under each cycle (a matrix cell's; the exceptions are the rejected ones): one
    query per distinct (page, filters) in the batch, however many cycles ask (ROW_NUMBER() per cycle)."""

    def batch_load(self, keys: list[tuple[int, PageArgs, RecordFilters]]) -> list[Any]:
        from citycard.graphql.clearing.types import ClearingRecordConnection

        found: dict[tuple[int, PageArgs, RecordFilters], Any] = {}
        asks: dict[tuple[PageArgs, RecordFilters], list[int]] = {}
        for cycle_id, page, filters in keys:
            asks.setdefault((page, filters), []).append(cycle_id)
        for (page, filters), cycle_ids in asks.items():
            parents = list(dict.fromkeys(cycle_ids))
            issuer, acquirer, status, reason = filters
            pages = keyset_pages(
                selectors.records_query(
                    cycle_ids=parents, issuer=issuer, acquirer=acquirer, status=status, reason=reason
                ),
                parent_field="cycle_id",
                parents=parents,
                connection_type=ClearingRecordConnection,
                keys=RECORD_KEYS,
                page=page,
            )
            for cycle_id, connection in zip(parents, pages, strict=True):
                found[(cycle_id, page, filters)] = connection
        return [found[key] for key in keys]
