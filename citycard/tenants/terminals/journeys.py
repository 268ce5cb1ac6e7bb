"""Gated journeys (进出站行程): a card's metro entry and exit taps paired into one journey at ingestion.

Runs in the verification stage with the stored checks (``checks.journey_pairing``), in the same
transaction, so a batch is paired exactly once; pairing is keyed and idempotent anyway. The exit tap
carries what the card said before it (``card_trip``): the entry's station, line, minute and the entry
gate's terminal number, decoded with the rule document in force. The journey's key — card, entry gate's
terminal number, entry minute — is what both taps know, so entry and exit meet whichever arrives first:
an exit before its entry makes an ``exit_only`` journey the entry completes; an entry alone is ``open``.
An exit the card had no entry for is a ``no_entry`` journey of its own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Q

from citycard.tenants.fares.selectors import fares_engines, fares_in_force, fares_version_at
from citycard.tenants.terminals.models import Journey, JourneyStatus, Routing, Terminal
from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.transit import TripCodec, card_state


def gates_of(terminal_ids: set[str]) -> dict[str, tuple[str, str]]:
    """{terminal id: (gate, station)} for the metro gates among ``terminal_ids``."""
    return {
        tid: (gate, station)
        for tid, gate, station in Terminal.objects.filter(terminal_id__in=terminal_ids)
        .exclude(gate="")
        .values_list("terminal_id", "gate", "location")
    }


def _minute(at: dt.datetime) -> int:
    return int(at.timestamp()) // 60


def _engine_at(tenant: Any, at: dt.datetime, cache: dict) -> Any:

    if "versions" not in cache:
        cache["versions"] = fares_in_force(tenant=tenant)
    version = fares_version_at(cache["versions"], at) if cache["versions"] else None
    if version is None:
        return None
    if version[1] not in cache:
        cache[version[1]] = fares_engines(pks=[version[1]]).get(version[1])
    return cache[version[1]]


def entry_read(tenant: Any, tap: Any, cache: dict) -> dict[str, Any] | None:
    """The entry the card held before an exit tap (station, line, minute, terminal, deposit), or None."""
    if not tap.card_trip:
        return None
    engine = _engine_at(tenant, tap.tapped_at, cache)
    if engine is None:
        return None
    codec = cache.setdefault(("codec", id(engine)), TripCodec.for_fare(engine))
    return card_state(codec, bytes.fromhex(tap.card_trip)).get("e")


def journeys_record(*, tenant: Any, taps: Sequence[Any]) -> int:
    """Pair the gate taps among ``taps`` into journeys; returns how many journeys were written."""
    purchases = [t for t in taps if t.kind == "purchase" and t.service != "bus"]
    if not purchases:
        return 0
    gates = gates_of({t.terminal_id for t in purchases})
    cache: dict = {}
    written = 0
    for tap in purchases:
        gate = gates.get(tap.terminal_id)
        if gate is None:
            continue
        kind, station = gate
        common = {"card_no": tap.card_no, "issuer": tap.issuer, "routing": tap.routing}
        if kind == "entry":
            key = f"{tap.card_no}:{tap.terminal_no}:{_minute(tap.tapped_at)}"
            fields = {
                "origin": station,
                "line": tap.route,
                "entered_at": tap.tapped_at,
                "entry_tx_id": tap.tx_id,
                "entry_fen": tap.amount_fen,
            }
        else:
            entry = entry_read(tenant, tap, cache)
            fields = {
                "destination": station,
                "exited_at": tap.tapped_at,
                "exit_tx_id": tap.tx_id,
                "exit_fen": tap.amount_fen,
            }
            if entry:
                key = f"{tap.card_no}:{entry['tm']}:{entry['t']}"
                fields.update(
                    origin=entry["s"],
                    line=entry["l"],
                    entered_at=dt.datetime.fromtimestamp(entry["t"] * 60, BEIJING),
                )
            else:
                key = f"{tap.card_no}:-:{tap.terminal_no}:{tap.card_counter}"
                fields["status"] = JourneyStatus.NO_ENTRY
        journey, created = Journey.objects.get_or_create(
            key=key, defaults={**common, **fields, "status": fields.get("status", JourneyStatus.OPEN)}
        )
        if not created:
            for name, value in fields.items():
                setattr(journey, name, value)
        if journey.status != JourneyStatus.NO_ENTRY:
            journey.status = (
                JourneyStatus.COMPLETE
                if journey.entry_tx_id and journey.exit_tx_id
                else JourneyStatus.OPEN
                if journey.entry_tx_id
                else JourneyStatus.EXIT_ONLY
            )
        # only the fields pairing sets: a half release saved meanwhile (released_at) is kept
        journey.save(update_fields=[*(f for f in fields if f != "status"), "status"])
        written += 1
    return written


def journeys_of_transactions(tx_ids: Sequence[int]) -> dict[int, Journey]:
    """{transaction id: its journey} for the gate taps among ``tx_ids`` (one query)."""
    wanted = set(tx_ids)
    found: dict[int, Journey] = {}
    for j in Journey.objects.filter(Q(entry_tx_id__in=wanted) | Q(exit_tx_id__in=wanted)):
        for tx in (j.entry_tx_id, j.exit_tx_id):
            if tx in wanted:
                found[tx] = j
    return found


# What the issuer checks of each tap of a journey (its TAC and card counter), with the exit's record fields.
_GATE_TAPS_SQL = """
SELECT t.id, t.tapped_at, t.card_counter, t.amount_fen, t.terminal_id, t.terminal_no, t.terminal_seq, t.algorithm,
       t.tac, t.balance_before_fen, t.balance_after_fen, t.route, t.kind, t.status, t.fare_rule_id, t.passes,
       COALESCE(b.batch_id, '')
FROM terminals_transaction t LEFT JOIN terminals_batch b ON b.id = t.batch_id
WHERE t.id = ANY(%s::bigint[])
"""
_GATE_TAP_FIELDS = (
    "source_tx_id",
    "tapped_at",
    "card_counter",
    "amount_fen",
    "terminal_id",
    "terminal_no",
    "terminal_seq",
    "algorithm",
    "tac",
    "balance_before_fen",
    "balance_after_fen",
    "route",
    "kind",
    "status",
    "fare_rule_id",
    "passes",
    "batch_id",
)


def journey_taps(journeys: Sequence[Journey]) -> dict[int, dict[str, Any]]:
    """{transaction id: the stored tap} for the entry and exit taps of ``journeys`` (one query), the time in
    Beijing time as terminals write it."""
    ids = [tx for j in journeys for tx in (j.entry_tx_id, j.exit_tx_id) if tx is not None]
    if not ids:
        return {}
    with connection.cursor() as cur:
        cur.execute(_GATE_TAPS_SQL, [ids])
        rows = cur.fetchall()
    taps = {}
    for row in rows:
        tap = dict(zip(_GATE_TAP_FIELDS, row, strict=True))
        tap["tapped_at"] = tap["tapped_at"].astimezone(BEIJING).isoformat()
        tap["passes"] = list(tap["passes"] or [])
        taps[tap["source_tx_id"]] = tap
    return taps


def half_release_minutes(*, tenant: Any, at: dt.datetime, cache: dict | None = None) -> int:
    """How long a half journey waits for its other tap before it is cleared alone: the longest journey
    time limit of the gate rules in force at ``at`` (240 min without any) plus the upload grace
    (``CITYCARD_HALF_JOURNEY_GRACE_MINUTES``); ``CITYCARD_HALF_JOURNEY_RELEASE_MINUTES`` overrides both."""
    if settings.HALF_JOURNEY_RELEASE_MINUTES > 0:
        return settings.HALF_JOURNEY_RELEASE_MINUTES
    engine = _engine_at(tenant, at, {} if cache is None else cache)
    gates = getattr(getattr(engine, "rules", None), "gates", None) or {}
    limit = max((g.time_limit_minutes for g in gates.values()), default=240)
    return limit + settings.HALF_JOURNEY_GRACE_MINUTES


def half_journeys_due(*, tenant: Any, now: dt.datetime, limit: int = 1000) -> list[Journey]:
    """The half journeys of own and roaming cards past their time-out, not yet released, locked (skipping
    rows another release holds): an entry without exit (``open``, from its entry time) or an exit whose entry
    never came (``exit_only``, from its exit time). A held card's (its issuer unknown here) is an exception
    of its own taps and is not released."""
    cache: dict = {}
    oldest = now - dt.timedelta(minutes=half_release_minutes(tenant=tenant, at=now, cache=cache))
    candidates = (
        Journey.objects.select_for_update(skip_locked=True)
        .filter(routing__in=(Routing.OWN, Routing.ROAMING), released_at__isnull=True)
        .filter(
            Q(status=JourneyStatus.OPEN, entered_at__lte=oldest)
            | Q(status=JourneyStatus.EXIT_ONLY, exited_at__lte=oldest)
        )
        .order_by("id")[:limit]
    )
    due = []
    for journey in candidates:  # the rules in force when the half was tapped decide its own time-out
        at = journey.entered_at if journey.status == JourneyStatus.OPEN else journey.exited_at
        if at + dt.timedelta(minutes=half_release_minutes(tenant=tenant, at=at, cache=cache)) <= now:
            due.append(journey)
    return due


def journey_due(journey: Journey) -> bool:
    """A journey goes to clearing once it is whole: entry and exit, or an exit the card had no entry for."""
    return journey.status in (JourneyStatus.COMPLETE, JourneyStatus.NO_ENTRY)
