"""The terminal-sequence gap check's shortcut for a batch without holes gives the full check's answer."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from citycard.tenants.terminals.checks import BatchContext, Tap, terminal_seq_gap_check

_AT = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)


def _tap(seq: int) -> Tap:
    return Tap(0, "3301", "330100", 1, seq, 0, 0, 0, _AT, "bus", "", "00" * 4, "0" * 12, 4, "purchase",
               "complete", "", [], "")  # fmt: skip


def _reference(previous: int | None, carried: list[int], new: list[int]) -> list[tuple[int, list[int]]]:
    """The check as a plain walk over every sequence number the batch carried."""
    flags = []
    for seq in sorted(set(carried) | set(new)):
        if previous is not None and seq > previous + 1 and seq in new:
            flags.append((seq, [previous + 1, seq - 1]))
        if previous is None or seq > previous:
            previous = seq
    return flags


@settings(max_examples=400, deadline=None)
@given(
    previous=st.none() | st.integers(0, 40),
    start=st.integers(0, 45),
    length=st.integers(0, 12),
    holes=st.sets(st.integers(0, 11), max_size=3),
    rejected=st.sets(st.integers(0, 11), max_size=3),
    extra=st.lists(st.integers(0, 60), max_size=3),
)
def test_the_shortcut_gives_the_full_checks_flags(previous, start, length, holes, rejected, extra):
    carried = [start + i for i in range(length) if i not in holes] + extra
    new = sorted({s for i, s in enumerate(carried) if i not in rejected})
    ctx = BatchContext(
        tenant=None, acquirer=None, terminal_pk=1, terminal_id="T", terminal_last_seq=previous, batch_pk=1,
        batch_id="b", received_at=_AT, terminal_clock=_AT, rule_version=1, hotlist_version=1,
        all_terminal_seqs=tuple(carried),
    )  # fmt: skip
    got = [
        (f.tap.terminal_seq, f.detail["missing"]) for f in terminal_seq_gap_check(ctx, [_tap(s) for s in new])
    ]
    assert sorted(got) == _reference(previous, carried, new)
