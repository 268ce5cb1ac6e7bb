"""The verification stage (核验): the stored-data checks over taps already accepted and acknowledged.

An upload stores its taps and answers the terminal; nothing in the acknowledgement depends on these
checks (they flag for review, never reject), so by default (``TERMINAL_VERIFY = "deferred"``) they run
here, after the upload has committed, over many batches at once: a fixed number of queries per run
whatever the number of batches, instead of per upload. ``batches_verify`` takes the tenant's oldest
unverified batches, reads their stored taps back, runs ``checks.STORED_CHECKS``, hands their roaming taps
to the interop outbox (one envelope for all of them) and writes the flags and each batch's
``verified_at`` in one transaction: a run that fails leaves the batches unverified,
and a verified batch is never checked again, so running it again (a retried Celery task, two beat
ticks at once) never flags a tap twice. One run at a time per tenant (a transaction-level advisory
lock), so e-purse shadows follow the batches in the order they were stored.

With ``TERMINAL_VERIFY = "inline"`` the upload runs the same checks on its own new taps before it
commits (``taps_verify``), hands its roaming taps over itself, and its batch is stored verified.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from citycard.platform.models import Tenant
from citycard.platform.sqlarrays import pg_array
from citycard.tenants.terminals import checks as checks_module
from citycard.tenants.terminals.checks import NOT_PROBED, Flag, StoredContext, Tap, clearing_record

VERIFY_MODES = ("deferred", "inline")
_LOCK_CLASS = 0x7665  # pg advisory lock class of the verification stage ("ve"); the key is the tenant pk


def verify_inline() -> bool:
    mode = settings.TERMINAL_VERIFY
    if mode not in VERIFY_MODES:
        raise ValueError(f"TERMINAL_VERIFY must be one of {VERIFY_MODES}, not {mode!r}")
    return mode == "inline"


def taps_verify(*, ctx: StoredContext, taps: Sequence[Tap]) -> list[Flag]:
    """Every stored-data check over ``taps`` (stored, with ``tx_id`` and ``batch_pk``), in order."""
    flags: list[Flag] = []
    if taps:
        for check in checks_module.STORED_CHECKS:
            flags.extend(check(ctx, taps))
    return flags


_FLAGS_SQL = """
INSERT INTO terminals_reviewflag (transaction_id, tapped_at, batch_id, card_no, code, detail, created_at,
    resolved_by, note)
SELECT f.tx, f.at, f.batch, f.card, f.code, f.detail::jsonb, %s, '', ''
FROM unnest(%s::bigint[], %s::timestamptz[], %s::bigint[], %s::text[], %s::text[], %s::text[])
    AS f(tx, at, batch, card, code, detail)
"""


def flags_sql(*, flags: Sequence[Flag], at: dt.datetime) -> tuple[str, list[Any]]:
    """The statement storing ``flags`` and its parameters (the caller may send it with others)."""
    return _FLAGS_SQL, [
        at,
        pg_array(f.tap.tx_id for f in flags),
        pg_array(f.tap.tapped_at for f in flags),
        pg_array(f.tap.batch_pk for f in flags),
        pg_array(f.tap.card_no for f in flags),
        pg_array(f.code for f in flags),
        pg_array(_dumps(f.detail) for f in flags),
    ]


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class VerifyResult:
    batches: int
    taps: int
    flags: int
    busy: bool = False  # another run holds this tenant's verification lock


_PENDING_SQL = """
SELECT b.id, b.first_tx_id, b.last_tx_id, t.terminal_id, b.batch_id
  FROM terminals_batch b JOIN terminals_terminal t ON t.id = b.terminal_id
 WHERE b.verified_at IS NULL
 ORDER BY b.id
 LIMIT %s
"""
# In the field order of checks.Tap up to ``passes``, then the batch, the card's transit record and the
# citizen code: each row makes its Tap positionally.
_TAP_COLUMNS = (
    "idx, card_no, issuer, card_counter, terminal_seq, amount_fen, balance_before_fen, balance_after_fen,"
    " tapped_at, service, route, tac, terminal_no, algorithm, kind, status, card_scheme, categories,"
    " fare_rule_id, routing, issuer_tenant, network, id, passes, batch_id, card_trip, code"
)


def _taps_stored(batches: list[tuple[int, int | None, int | None, str, str]]) -> list[Tap]:
    """The stored taps of these batches, in batch and position order (one query: the id range the
    batches' taps took, through each month partition's primary key, filtered to the batches)."""
    ranges = [(first, last) for _pk, first, last, _t, _b in batches if first is not None]
    if not ranges:
        return []
    low, high = min(r[0] for r in ranges), max(r[1] for r in ranges)
    terminal_of = {pk: terminal for pk, _f, _l, terminal, _b in batches}
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT {_TAP_COLUMNS} FROM terminals_transaction"
            " WHERE id BETWEEN %s AND %s AND batch_id = ANY(%s::bigint[]) ORDER BY batch_id, idx",
            [low, high, pg_array(terminal_of)],
        )
        rows = cur.fetchall()
    # Positional (a third of the keyword call's cost); tapped_at_text is not needed after the upload.
    return [Tap(*row[:-3], "", terminal_of[row[-3]], row[-3], NOT_PROBED, row[-2], row[-1]) for row in rows]


def batches_verify(*, tenant: Tenant, limit: int = 40, now: dt.datetime | None = None) -> VerifyResult:
    """Verify up to ``limit`` of the oldest unverified batches of ``tenant`` (the connection must be on
    its schema), in one transaction. ``busy`` when another run is verifying this tenant right now."""
    now = now or timezone.now()
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", [_LOCK_CLASS, tenant.pk])
            if not cur.fetchone()[0]:
                return VerifyResult(0, 0, 0, busy=True)
            cur.execute(_PENDING_SQL, [limit])
            batches = cur.fetchall()
        if not batches:
            return VerifyResult(0, 0, 0)
        taps = _taps_stored(batches)
        flags = taps_verify(ctx=StoredContext(tenant=tenant, acquirer=tenant.clearing_tenant), taps=taps)
        _hand_off_roaming(tenant=tenant, taps=taps, batch_ids={b[0]: b[4] for b in batches})
        statements, params = [], []
        if flags:
            sql, args = flags_sql(flags=flags, at=now)
            statements.append(sql)
            params += args
        statements.append("UPDATE terminals_batch SET verified_at = %s WHERE id = ANY(%s::bigint[])")
        params += [now, pg_array(b[0] for b in batches)]
        with connection.cursor() as cur:
            cur.execute(";\n".join(statements), params)
    return VerifyResult(len(batches), len(taps), len(flags))


def _hand_off_roaming(*, tenant: Tenant, taps: Sequence[Tap], batch_ids: dict[int, str]) -> None:
    """The roaming taps of the verified batches still ``pending`` into the interop outbox, as one signed
    envelope (``checks.ROAMING_SINK``); marked ``sent`` in the same transaction. Taps another hand-off
    took meanwhile (``services.roaming_pending_handoff``) are left to it."""
    sink = checks_module.ROAMING_SINK
    roaming = [t for t in taps if t.routing == "roaming"]
    if sink is None or not roaming:
        return
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE terminals_transaction SET outbox_state = 'sent'"
            " WHERE id = ANY(%s::bigint[]) AND tapped_at >= %s AND outbox_state = 'pending' RETURNING id",
            [pg_array(t.tx_id for t in roaming), min(t.tapped_at for t in roaming)],
        )
        taken = {row[0] for row in cur.fetchall()}
    records = [
        clearing_record(
            ctx_acquirer=tenant.clearing_tenant.code,
            batch_id=batch_ids[t.batch_pk],
            terminal_id=t.terminal_id,
            tap=t,
        )
        for t in roaming
        if t.tx_id in taken
    ]
    if records:
        sink(records, "terminals:verification")


def batches_verify_all(*, tenant: Tenant, limit: int = 40, now: dt.datetime | None = None) -> VerifyResult:
    """``batches_verify`` until nothing is left unverified (or another run holds the tenant)."""
    batches = taps = flags = 0
    while True:
        done = batches_verify(tenant=tenant, limit=limit, now=now)
        batches, taps, flags = batches + done.batches, taps + done.taps, flags + done.flags
        if done.busy or done.batches < limit:
            return VerifyResult(batches, taps, flags, busy=done.busy)
