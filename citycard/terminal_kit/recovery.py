"""Torn-tap recovery (断电交易恢复): did a torn debit happen? Decided from what the card says now.

A tap is torn when DEBIT got no answer (or one the PSAM could not verify): the terminal holds a record of
what it asked — the card's offline ATC at INITIALIZE (``card_counter``), amount, its terminal number,
date and time — but not whether the card did it. The card may have been used anywhere since, so GET
TRANSACTION PROVE (which covers only the card's last debit, and proves whichever debit that was) cannot
decide alone. ``torn_decide`` decides from the card's offline ATC now (INITIALIZE) and its transaction
log (READ RECORD, SFI 0x18), in this order:

1. the ATC is still ``card_counter``: no debit since the torn INITIALIZE → it did **not** happen (void);
2. the ATC went back below it: not the card the record was made with → **undecided**;
3. the log entry with ATC ``card_counter`` is this terminal's debit (same amount, type, terminal number,
   date and time) → it **happened**; any other transaction there → it did **not** happen (that counter
   was spent elsewhere, and a debit spends its counter);
4. the log no longer holds that counter (ten newer transactions) → **undecided**.

What the terminal then does (``Validator._recover``): a debit that happened is completed — with its TAC
from GET TRANSACTION PROVE if it is still the card's last debit (``torn_resolved``), otherwise uploaded
``torn_unproven`` with the card's log record in place of the TAC, for the back office to settle; one
that did not happen is voided; an undecided one is uploaded ``torn_undecided`` (TAC field ``00000000``)
for the back office to settle against the issuer's records of that counter. None of these stops the card:
the tap goes on. The rider's retap — the debit happened, nothing since, within ``RETAP_WINDOW`` — is
approved without a second charge; any other tap is a new ride and pays.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from citycard.terminal_kit.card import apdu as A

RETAP_WINDOW = dt.timedelta(minutes=2)
UNDECIDED_TAC = "00000000"


@dataclass(frozen=True)
class LogEntry:
    """One record of the card's transaction log (23 bytes)."""

    atc: int
    amount: int
    kind: int
    terminal_no: bytes
    date: bytes
    time: bytes
    raw: bytes

    @classmethod
    def parse(cls, raw: bytes) -> LogEntry:
        if len(raw) != A.LOG_RECORD_SIZE:
            raise ValueError(f"a log record is {A.LOG_RECORD_SIZE} bytes, not {len(raw)}")
        return cls(
            atc=int.from_bytes(raw[0:2], "big"),
            amount=int.from_bytes(raw[5:9], "big"),
            kind=raw[9],
            terminal_no=raw[10:16],
            date=raw[16:20],
            time=raw[20:23],
            raw=raw,
        )


@dataclass(frozen=True)
class Verdict:
    outcome: str  # "happened" | "not_happened" | "undecided"
    reason: str
    entry: LogEntry | None = None


def record_matches(record: Mapping[str, Any], entry: LogEntry) -> bool:
    """Whether the log entry is the debit the torn record describes."""
    stamp = record["tapped_at"]
    return (
        entry.atc == record["card_counter"]
        and entry.amount == record["amount_fen"]
        and entry.kind == record.get("tx_type", A.PURCHASE)
        and entry.terminal_no.hex() == record["terminal_no"]
        and entry.date.hex() == stamp[:10].replace("-", "")
        and entry.time.hex() == stamp[11:19].replace(":", "")
    )


def torn_decide(record: Mapping[str, Any], *, atc_now: int, log: Callable[[int], LogEntry | None]) -> Verdict:
    """Whether the torn debit ``record`` happened, from the card's offline ATC now and ``log(n)`` (the
    card's n-th newest log record, or None past the end); reads only as far back as it must."""
    counter = record["card_counter"]
    if atc_now == counter:
        return Verdict("not_happened", f"the card's counter is still {counter}: no debit since")
    if atc_now < counter:
        return Verdict("undecided", f"the card's counter {atc_now} is below the torn tap's {counter}")
    for n in range(1, atc_now - counter + 1):
        entry = log(n)
        if entry is None:
            break
        if entry.atc == counter:
            if record_matches(record, entry):
                return Verdict("happened", f"the card's log shows this debit at counter {counter}", entry)
            return Verdict(
                "not_happened",
                f"counter {counter} went to terminal {entry.terminal_no.hex()} ({entry.amount} fen) instead",
                entry,
            )
        if entry.atc < counter:
            break
    return Verdict("undecided", f"the card's log no longer holds counter {counter}")
