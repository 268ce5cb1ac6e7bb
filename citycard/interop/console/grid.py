"""The shapes the console's pages draw: a cycle row of the day, the bilateral matrix as a grid, the net
positions with their Σ. Pure functions over what the selectors read (amounts stay integer fen)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from html import escape as html_escape
from typing import Any

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext_lazy as _

from citycard.interop.models import CycleState, RecordKind, RecordStatus
from citycard.interop.selectors import CYCLE_STEPS
from citycard.platform.templatetags.people import beijing, reason, yuan, yuan_of

# What each issuer check means, for people (docs/clearing.md, "Issuer validation").
CHECK_TEXT = {
    "issuer": _("the card number's division prefix is the issuer's (else not_our_card)"),
    "card_known": _("the card is in the issuer's card table (else card_unknown)"),
    "hotlist": _("not hotlisted beyond the grace period before the tap (else hotlisted)"),
    "tac": _("the TAC recomputed under the issuer's key matches (else tac_invalid)"),
    "counter": _("the card's transaction counter was not cleared before (else counter_replayed)"),
}


def state_label(state: str) -> str:
    """A cycle state (or step reached) as people read it: its CycleState label, the code if none."""
    return CycleState(state).label if state in CycleState.values else state


def status_label(status: str) -> str:
    """A record status as people read it: its RecordStatus label."""
    return RecordStatus(status).label if status in RecordStatus.values else status


def kind_label(kind: str) -> str:
    return RecordKind(kind).label if kind in RecordKind.values else kind


def step_index(state: str) -> int:
    """How far the cycle has come: 0 (open) … 4 (settled; disputed counts as settled)."""
    return CYCLE_STEPS.index("settled" if state == "disputed" else state)


@dataclass
class CycleRow:
    """One cycle on the Today page."""

    cycle: Any
    records: int = 0
    amount_fen: int = 0  # of the records not rejected
    exceptions: int = 0
    exceptions_fen: int = 0
    open_disputes: int = 0

    @property
    def steps(self) -> list[tuple[str, bool]]:
        done = step_index(self.cycle.state)
        return [(state_label(name), i <= done) for i, name in enumerate(CYCLE_STEPS)]


def cycle_row(cycle, totals: dict[str, tuple[int, int]], open_disputes: int) -> CycleRow:
    row = CycleRow(cycle=cycle, open_disputes=open_disputes)
    for status, (n, amount) in totals.items():
        row.records += n
        if status == "rejected":
            row.exceptions, row.exceptions_fen = n, amount
        else:
            row.amount_fen += amount
    return row


@dataclass
class Agreement:
    agreement: Any
    current: CycleRow | None = None
    previous: CycleRow | None = None


def day_board(agreements, cycles, totals, disputes, on: dt.date) -> list[Agreement]:
    """Every agreement with its cycle of ``on`` (current) and the one before (previous)."""
    board = {a.pk: Agreement(agreement=a) for a in agreements}
    for cycle in cycles:
        entry = board.get(cycle.agreement_id)
        if entry is None:
            continue
        row = cycle_row(cycle, totals.get(cycle.pk, {}), disputes.get(cycle.pk, 0))
        month = on.replace(day=1)
        current = cycle.business_date == on or (
            cycle.agreement.period == "monthly" and cycle.business_date == month
        )
        if current:
            entry.current = row
        else:
            entry.previous = row
    return list(board.values())


@dataclass(frozen=True)
class Cell:
    """One cell of the bilateral matrix as the page draws it."""

    issuer: str
    acquirer: str
    records: int
    amount_fen: int


@dataclass
class Matrix:
    issuers: list[str] = field(default_factory=list)
    acquirers: list[str] = field(default_factory=list)
    rows: list[tuple[str, list[Any], int, int]] = field(default_factory=list)  # issuer, cells, records, fen
    column_totals: list[tuple[int, int]] = field(default_factory=list)  # records, fen per acquirer
    records: int = 0
    amount_fen: int = 0

    @property
    def participants(self) -> int:
        """Everyone in the matrix, issuer or acquirer."""
        return len(set(self.issuers) | set(self.acquirers))


def matrix_grid(
    *,
    acquirers: list[tuple[str, int, int]],
    issuers: list[tuple[str, int, int]],
    points: list[list[int]] | None,
) -> Matrix:
    """The matrix of ``selectors.bilateral_matrix_points``: issuer rows × acquirer columns with their totals
    (records, gross amount in fen). With ``points`` (``[[acquirer index, issuer index, fen, records], …]``)
    its rows hold every cell (a Cell or None); without, only the axes and totals (a large network's page
    draws no table). Linear in the cells."""
    grid = Matrix(
        issuers=[code for code, _n, _fen in issuers],
        acquirers=[code for code, _n, _fen in acquirers],
        column_totals=[(n, fen) for _code, n, fen in acquirers],
        records=sum(n for _code, n, _fen in issuers),
        amount_fen=sum(fen for _code, _n, fen in issuers),
    )
    if points is not None:
        cells: list[list[Cell | None]] = [[None] * len(acquirers) for _ in issuers]
        for x, y, fen, n in points:
            cells[y][x] = Cell(issuer=grid.issuers[y], acquirer=grid.acquirers[x], records=n, amount_fen=fen)
        grid.rows = [(code, cells[y], n, fen) for y, (code, n, fen) in enumerate(issuers)]
    return grid


def largest_payers_and_receivers(positions, limit: int) -> tuple[list[Any], list[Any]]:
    """The ``limit`` largest net payers (most negative net first) and receivers (most positive first)."""
    payers = sorted((p for p in positions if p.net_fen < 0), key=lambda p: (p.net_fen, p.participant))
    receivers = sorted((p for p in positions if p.net_fen > 0), key=lambda p: (-p.net_fen, p.participant))
    return payers[:limit], receivers[:limit]


def positions_sum(positions) -> dict[str, int]:
    """Σ of the net positions: receivable, payable and net (which must read 0)."""
    positions = list(positions)
    return {
        "receivable_fen": sum(p.receivable_fen for p in positions),
        "payable_fen": sum(p.payable_fen for p in positions),
        "net_fen": sum(p.net_fen for p in positions),
    }


_RECORD_ROW = (
    '<tr><td><a href="{}{}/"><code>{}</code></a></td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td>'
    '<td class="num">{}</td><td class="num small">{} / {}</td>'
    '<td><span class="tag status-{}">{}</span>{}</td><td>{}</td></tr>'
)


def record_rows(records, *, cycle_state: str, record_base: str) -> str:
    """The rows of the records list (up to 500 a page), escaped, built here rather than by the template
    language: a page of 500 rows then renders in milliseconds (benchmarks/console.py)."""
    return format_html_join(
        "\n",
        _RECORD_ROW,
        (
            (
                record_base,
                r.record_id,
                r.record_id,
                kind_label(r.kind),
                r.issuer,
                r.acquirer,
                r.card_no,
                yuan(r.amount_fen),
                yuan_of(r.issuer_fee_fen),
                yuan_of(r.network_fee_fen),
                status,
                status_label(status),
                format_html(" {}", reason(r.reason)) if r.reason else "",
                beijing(r.accepted_at),
            )
            for r in records
            for status in (r.status_in(cycle_state),)
        ),
    )


# The cycle page's per-participant tables (300 rows each in a national network), built like the records
# list's rows: escaped and joined here, not rendered cell by cell by the template language.
_POSITION_ROW = (
    '<tr class="position" data-participant="{}" data-net="{}"><td>{}</td><td class="num">{}</td>'
    '<td class="num">{}</td><td class="num">{}</td></tr>'
)
_INSTRUCTION_ROW = '<tr><td>{}</td><td>{}</td><td class="num">{}</td><td>{}</td></tr>'
_FILE_ROW = (
    '<tr><td>{}</td><td><span class="tag">{}</span></td><td><code class="digest" title="{}">{}…</code>'
    ' <a class="download" href="{}{}.csv" download>{}</a></td><td>{}</td></tr>'
)


def _rows(template: str, rows) -> str:
    """``format_html_join("\\n", template, rows)`` without its per-argument lazy wrappers (~4× faster over a
    national network's 300-row tables): text escaped with ``html.escape``, safe HTML (``yuan``) kept."""
    return mark_safe(
        "\n".join(
            template.format(*(a if isinstance(a, SafeString) else html_escape(str(a)) for a in row))
            for row in rows
        )
    )


def position_rows(positions) -> str:
    return _rows(
        _POSITION_ROW,
        (
            (
                p.participant,
                p.net_fen,
                p.participant,
                yuan(p.receivable_fen),
                yuan(p.payable_fen),
                yuan(p.net_fen),
            )
            for p in positions
        ),
    )


def instruction_rows(instructions) -> str:
    return _rows(
        _INSTRUCTION_ROW,
        ((i.payer, i.payee, yuan(i.amount_fen), i.value_date.isoformat()) for i in instructions),
    )


def file_rows(files, *, file_base: str, download: str) -> str:
    """``file_base``: the files' URL up to the participant (``…/files/``)."""
    return _rows(
        _FILE_ROW,
        (
            (
                f.participant,
                f.state,
                f.sha256,
                f.sha256[:16],
                file_base,
                f.participant,
                download,
                beijing(f.answered_at),
            )
            for f in files
        ),
    )
