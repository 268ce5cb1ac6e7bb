"""What becomes of each tap of a batch: accepted, duplicate, conflict, or rejected with a reason.

``taps_sort`` decides what the batch itself can tell (each tap checked unless the common form checked it,
repeated within the batch: duplicate, or conflict if its content differs; routed by issuer);
``taps_settle`` what the stored taps tell (a natural key stored already: duplicate or conflict, never
stored twice). A rejected tap gives nothing: not even its sequence number.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from citycard.platform.models import Tenant
from citycard.tenants.terminals.checks import Route, Tap, route_for
from citycard.tenants.terminals.ingest.spec import Reject, TapWindow
from citycard.tenants.terminals.ingest.storage import (
    Claim,
    ExceptionRow,
    NaturalKey,
    TapContent,
    rejected_row,
    tap_content,
)
from citycard.tenants.terminals.ingest.validate import tap_validate
from citycard.terminal_kit.beijing import BEIJING

ACCEPTED, DUPLICATE, REJECTED, CONFLICT = "accepted", "duplicate", "rejected", "conflict"


@dataclass
class Sorting:
    """A batch's taps once sorted by ``taps_sort``."""

    outcomes: list[tuple[str, str]]  # (outcome, reason) per index; "" until decided
    valid: list[Tap] = field(default_factory=list)  # first of their natural key in the batch, routed
    naturals: list[NaturalKey] = field(default_factory=list)  # of each valid tap
    all_seqs: list[int] = field(default_factory=list)  # of every tap not rejected (repeats too)
    routes: dict[tuple[str, str], Route] = field(default_factory=dict)  # (issuer, Beijing date) -> Route
    months: set[tuple[int, int]] = field(default_factory=set)  # (year, month) of every tap's Beijing date
    exceptions: list[ExceptionRow] = field(default_factory=list)  # rejected and conflicting taps
    latest_tap: dt.datetime | None = None  # the latest tapped_at of the valid taps

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys((ACCEPTED, DUPLICATE, REJECTED, CONFLICT), 0)
        for outcome, _ in self.outcomes:
            counts[outcome] += 1
        return counts

    def rejected_by_reason(self) -> dict[str, int]:
        by_reason: dict[str, int] = {}
        for outcome, reason in self.outcomes:
            if outcome == REJECTED:
                by_reason[reason] = by_reason.get(reason, 0) + 1
        return by_reason


def local_day(tap: Tap) -> str:
    """The tap's Beijing date, YYYY-MM-DD: read off its text when that is already in +08:00."""
    text = tap.tapped_at_text
    if text[19:] == "+08:00":
        return text[:10]
    return tap.tapped_at.astimezone(BEIJING).date().isoformat()


def taps_sort(
    raw_taps: list,
    *,
    checked: bool,
    window: TapWindow,
    acquirer: Tenant,
    terminal_id: str,
    batch_pk: int,
) -> Sorting:
    """Each tap validated (unless ``checked``: the common form's, Taps already), told apart from one
    repeated within the batch, and routed by its issuer on its Beijing date (route_for, cached)."""
    result = Sorting(outcomes=[("", "")] * len(raw_taps))
    outcomes, valid, naturals, routes = result.outcomes, result.valid, result.naturals, result.routes
    all_seqs = result.all_seqs
    seen: dict[NaturalKey, Tap] = {}
    latest_text, latest_other = "", window.oldest  # the latest stamp in Beijing form, in any other form
    for index, raw in enumerate(raw_taps):
        try:
            tap = raw if checked else tap_validate(raw, window)
        except Reject as exc:
            # Nothing of a rejected tap is taken: not its sequence number for the terminal's high-water mark
            # or its gaps (it may be anything, 2**63 or 2**62 as well as the next one).
            outcomes[index] = (REJECTED, exc.reason)
            result.exceptions.append(rejected_row(index, raw, exc.reason, exc.message))
            continue
        all_seqs.append(tap.terminal_seq)
        natural = (tap.card_no, tap.card_counter, tap.terminal_seq)
        first = seen.get(natural)
        if first is not None:
            outcomes[index] = _repeat(index, raw, tap, tap_content(first), "earlier in this batch", result)
            continue
        seen[natural] = tap
        tap.index = index
        text = tap.tapped_at_text
        if len(text) == 25 and text[19:] == "+08:00":  # Beijing form: its date and its order, as text
            if text > latest_text:
                latest_text = text
            route_key = (tap.issuer, text[:10])
        else:
            if tap.tapped_at > latest_other:
                latest_other = tap.tapped_at
            route_key = (tap.issuer, local_day(tap))
        route = routes.get(route_key)
        if route is None:
            day = dt.date.fromisoformat(route_key[1])
            route = routes[route_key] = route_for(acquirer=acquirer, issuer=tap.issuer, on=day)
            result.months.add(
                (day.year, day.month)
            )  # every day of the batch has a route: every month is here
        tap.routing, tap.issuer_tenant, tap.network = route.routing, route.issuer_tenant, route.network
        tap.terminal_id, tap.batch_pk = terminal_id, batch_pk
        valid.append(tap)
        naturals.append(natural)
    result.latest_tap = latest_other
    if latest_text and dt.datetime.fromisoformat(latest_text) > latest_other:
        result.latest_tap = dt.datetime.fromisoformat(latest_text)
    return result


def taps_settle(result: Sorting, *, claim: Claim, raw_taps: list) -> list[Tap]:
    """The valid taps whose natural key is not stored yet, each with its id from the claim: the new taps.
    The others are duplicates or conflicts of the stored ones."""
    new = []
    stored, outcomes = claim.stored, result.outcomes
    for tap, natural, tx_id in zip(result.valid, result.naturals, claim.ids, strict=True):
        kept = stored.get(natural) if stored else None
        if kept is not None:
            outcomes[tap.index] = _repeat(tap.index, raw_taps[tap.index], tap, kept, "stored", result)
            continue
        tap.tx_id = tx_id
        outcomes[tap.index] = (ACCEPTED, "")
        new.append(tap)
    return new


def _repeat(index: int, raw: Any, tap: Tap, kept: tuple, where: str, result: Sorting) -> tuple[str, str]:
    """The outcome of a tap whose natural key was taken (``where``: stored, or earlier in this batch) with
    content ``kept``: a duplicate when the same, else a conflict naming the first field that differs,
    kept in the exceptions with what it sent."""
    content = tap_content(tap)
    if kept == content:
        return (DUPLICATE, "repeated in this batch" if where != "stored" else "already received")
    name = next(name for name, a, b in zip(TapContent._fields, kept, content, strict=True) if a != b)
    message = (
        f"{name} {_shown(getattr(tap, name))} differs from {_shown(getattr(TapContent(*kept), name))}"
        f" of the tap {where} under its key"
    )
    result.exceptions.append(rejected_row(index, raw if type(raw) is dict else _sent(tap), CONFLICT, message))
    if where == "stored":
        return (CONFLICT, f"already received with other {name}")
    return (CONFLICT, f"repeated in this batch with other {name}")


def _shown(value: Any) -> str:
    return value.isoformat() if isinstance(value, dt.datetime) else json.dumps(value, ensure_ascii=False)


def _sent(tap: Tap) -> dict[str, Any]:
    """A tap of the common form (checked already) as the terminal sent it, for the exceptions table."""
    return {
        "card_no": tap.card_no,
        "issuer": tap.issuer,
        "card_counter": tap.card_counter,
        "terminal_seq": tap.terminal_seq,
        "amount_fen": tap.amount_fen,
        "balance_before_fen": tap.balance_before_fen,
        "balance_after_fen": tap.balance_after_fen,
        "tapped_at": tap.tapped_at_text,
        "service": tap.service,
        "route": tap.route,
        "tac": tap.tac,
        "terminal_no": tap.terminal_no,
        "algorithm": tap.algorithm,
        "kind": tap.kind,
        "status": tap.status,
        "card_scheme": tap.card_scheme,
        "categories": tap.categories,
        "passes": tap.passes,
        "fare_rule_id": tap.fare_rule_id,
    }
