"""What an upload reads and writes, in a fixed number of round trips, with named rows.

* ``upload_lookup``: **one query** reads the terminal key named by the signature with its terminal, any
  batch already stored under the payload's batch id, the tenant's current signing key, the acquirer's
  card TAC master and the id a new batch gets (``Lookup``);
* ``taps_claim``: under the terminal's row lock, its high-water mark, an id for each valid tap, and the
  stored taps among those not above the mark (``TapContent`` by natural key);
* ``taps_copy``: the new taps by COPY straight into the month partitions, each line made by
  ``copy_line`` from the ``COPY_COLUMNS`` spec;
* ``batch_write``: the batch row, flags, exceptions and the terminal's mark in one round trip.

The statements are server-side prepared, one set per connection and schema (``statement``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import operator
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from django.conf import settings
from django.db import connection

from citycard.platform.keys import current_key_from_row, tenant_current_key_sql
from citycard.platform.models import KeyPurpose, TenantKey
from citycard.platform.sqlarrays import pg_array
from citycard.tenants.terminals.checks import Tap
from citycard.tenants.terminals.models import Batch

# --- rows ----------------------------------------------------------------------------------------------


class TerminalKeyRow(NamedTuple):
    """The terminal key named by the signature."""

    public_key: bytes
    retired_at: dt.datetime | None
    verify_until: dt.datetime | None


class TerminalRow(NamedTuple):
    """The terminal that key belongs to."""

    pk: int
    terminal_id: str
    status: str
    status_reason: str
    last_seq: int | None  # its high-water mark as the lookup read it


class StoredBatch(NamedTuple):
    """A batch already stored under the payload's batch id: what its acknowledgement is made of."""

    sha256: str
    ack_parts: str
    accepted: int
    duplicates: int
    rejected: int
    terminal_id: str  # the terminal that sent it


@dataclass(frozen=True)
class Lookup:
    """Everything an upload needs to decide, read in one query."""

    key: TerminalKeyRow
    terminal: TerminalRow
    stored: StoredBatch | None
    signing_key: TenantKey  # the tenant's current signing key (for the acknowledgement)
    card_tac_key: TenantKey  # the acquirer's card TAC master (for the TAC check of own cards)
    batch_pk: int  # the id the batch gets if it is new (drawn from the batch table's sequence)


# What a tap says besides its natural key (card, counter, terminal, sequence): Tap fields, stored in the
# transaction columns of the same names. A tap sent again under a key already taken is a duplicate when
# all of these are the same, and a conflict naming the first that differs when not (Mojaloop: same id,
# other content; TigerBeetle names the field); the tap taken first stays. Fields a tap may carry beyond
# these are not stored, and so not compared.
class TapContent(NamedTuple):
    amount_fen: int
    balance_before_fen: int
    balance_after_fen: int
    tapped_at: dt.datetime
    tac: str
    terminal_no: str
    algorithm: int
    status: str
    service: str
    route: str
    card_scheme: str
    fare_rule_id: str
    categories: list[str]
    passes: list[str]


_CONTENT_TYPES = dict(  # the SQL type of each TapContent column, for the claim's NULL row
    amount_fen="bigint",
    balance_before_fen="bigint",
    balance_after_fen="bigint",
    tapped_at="timestamptz",
    tac="varchar",
    terminal_no="varchar",
    algorithm="smallint",
    status="varchar",
    service="varchar",
    route="varchar",
    card_scheme="varchar",
    fare_rule_id="varchar",
    categories="varchar[]",
    passes="varchar[]",
)
assert tuple(_CONTENT_TYPES) == TapContent._fields
tap_content: Callable[[Tap], tuple] = operator.attrgetter(
    *TapContent._fields
)  # compares equal to a TapContent


# A tap's natural key: (card_no, card_counter, terminal_seq) of its terminal. A plain tuple, made for
# every tap: a NamedTuple costs seven times as much to make.
NaturalKey = tuple[str, int, int]


# --- SQL ---------------------------------------------------------------------------------------------

_LOOKUP_SQL = (
    """
SELECT k.public_key, k.retired_at, k.verify_until, t.id, t.terminal_id, t.status, t.status_reason, t.last_seq,
       b.sha256, b.ack_parts, b.accepted, b.duplicates, b.rejected, bt.terminal_id,
       sk.*, tk.*, nextval('terminals_batch_id_seq')
  FROM terminals_terminalkey k
  JOIN terminals_terminal t ON t.id = k.terminal_id
  LEFT JOIN terminals_batch b ON b.batch_id = %s
  LEFT JOIN terminals_terminal bt ON bt.id = b.terminal_id"""
    + tenant_current_key_sql("sk", KeyPurpose.SIGNING)
    + tenant_current_key_sql("tk", KeyPurpose.CARD_TAC)
    + """
 WHERE k.key_id = %s
"""
)
_BATCH_SQL = """
INSERT INTO terminals_batch (id, batch_id, terminal_id, sha256, created_at, received_at, clock_skew_s,
    rule_version, hotlist_version, tap_count, accepted, duplicates, rejected, ack_parts, first_tx_id, last_tx_id,
    verified_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"""
# The natural key (card, counter, terminal, sequence) is kept unique under the terminal's row lock, which
# makes one terminal's uploads take turns: a tap whose sequence number is above the terminal's high-water
# mark (read after the lock) cannot have been stored before; the others are looked up among the stored
# taps by (terminal, sequence). The lock statement comes first in the round trip, so the next statement's
# snapshot (READ COMMITTED: one per statement) sees what an upload it waited for has committed.
_LOCK_SQL = "SELECT 1 FROM terminals_terminal WHERE id = %s FOR NO KEY UPDATE"
# The claim's row and the stored taps' rows share their columns (UNION ALL): the mark and the ids drawn,
# or a stored tap's natural key and content (TapContent) to tell a resend from a conflict.
_CLAIM_SQL = f"""
SELECT t.last_seq, array(SELECT nextval('terminals_transaction_id_seq') FROM generate_series(1, %s)),
       NULL::varchar, NULL::bigint, {", ".join(f"NULL::{kind}" for kind in _CONTENT_TYPES.values())}
  FROM terminals_terminal t WHERE t.id = %s"""
_STORED_SQL = f"""
SELECT x.terminal_seq, NULL::bigint[], x.card_no, x.card_counter, {", ".join(f"x.{n}" for n in TapContent._fields)}
  FROM terminals_transaction x WHERE x.terminal_id = %s AND x.terminal_seq = ANY(%s::bigint[])"""
STATEMENTS = {  # prepared per connection and schema: see statement
    "ingest_lookup": _LOOKUP_SQL,
    "ingest_lock": _LOCK_SQL,
    "ingest_claim": _CLAIM_SQL,
    "ingest_claim_stored": _CLAIM_SQL + "\nUNION ALL" + _STORED_SQL,
    "ingest_stored": _STORED_SQL,
    "ingest_batch": _BATCH_SQL,
    "ingest_mark": "UPDATE terminals_terminal SET last_seq = GREATEST(COALESCE(last_seq, %s), %s) WHERE id = %s",
}
EXCEPTIONS_SQL = """
INSERT INTO terminals_tapexception (kind, reason, message, batch_id, idx, transaction_id, tapped_at, card_no,
    issuer, raw, created_at, resolved_by)
SELECT e.kind, e.reason, e.message, %s, e.idx, e.tx, e.at, e.card, e.issuer, e.raw::jsonb, %s, ''
FROM unnest(%s::text[], %s::text[], %s::text[], %s::int[], %s::bigint[], %s::timestamptz[], %s::text[],
    %s::text[], %s::text[]) AS e(kind, reason, message, idx, tx, at, card, issuer, raw)
"""

# The upload's own queries as server-side prepared statements, one set per connection and schema, so
# each is planned once instead of on every upload (~0.6 ms of database time per batch, most of it the
# planning of the lookup's joins and of the partitioned table). A connection keeps the statements of at
# most _PREPARED_SCHEMAS schemas (a worker serves many tenants); past that it deallocates them all and
# starts again. CITYCARD_TERMINAL_PREPARED_STATEMENTS=off sends the plain SQL (for a pooler that does not
# keep a session's prepared statements, e.g. PgBouncer in transaction mode).
PREPARED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # driver connection -> schemas prepared
_PREPARED_SCHEMAS = 32


def _numbered(sql: str) -> str:
    parts = sql.split("%s")
    return parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], start=1))


def statement(cur, name: str) -> str:
    """What to send for the upload's statement ``name`` (a key of STATEMENTS) with its ``%s``
    parameters: the EXECUTE of its prepared statement (all of them prepared, in one round trip, the first
    time this connection works in this schema), or the plain SQL."""
    sql = STATEMENTS[name]
    if not settings.TERMINAL_PREPARED_STATEMENTS:
        return sql
    raw = connection.connection
    schema = connection.schema_name
    schemas = PREPARED.get(raw)
    if schemas is None:
        schemas = PREPARED[raw] = set()
    if schema not in schemas:
        if len(schemas) >= _PREPARED_SCHEMAS:
            cur.execute("DEALLOCATE ALL")
            schemas.clear()
        cur.execute(
            ";\n".join(
                f'PREPARE "{other}_{schema}" AS {_numbered(text)}' for other, text in STATEMENTS.items()
            )
        )
        schemas.add(schema)
    return f'EXECUTE "{name}_{schema}" ({", ".join(["%s"] * sql.count("%s"))})'


# --- reads ---------------------------------------------------------------------------------------------


def upload_lookup(*, key_id: str, batch_id: str | None, tenant_pk: int, acquirer_pk: int) -> Lookup | None:
    """The terminal key ``key_id`` with all the rest (``Lookup``), or None if no terminal has that key.
    The stored batch is read now, used only once the signature and the header have passed."""
    with connection.cursor() as cur:
        cur.execute(statement(cur, "ingest_lookup"), [batch_id, tenant_pk, acquirer_pk, key_id])
        row = cur.fetchone()
    if row is None:
        return None
    return Lookup(
        key=TerminalKeyRow(*row[0:3]),
        terminal=TerminalRow(*row[3:8]),
        stored=StoredBatch(*row[8:14]) if row[8] is not None else None,
        signing_key=current_key_from_row(KeyPurpose.SIGNING, *row[14:17]),
        card_tac_key=current_key_from_row(KeyPurpose.CARD_TAC, *row[17:20]),
        batch_pk=row[20],
    )


def stored_batch(batch_id: str) -> StoredBatch | None:
    """The batch stored under ``batch_id`` (one that committed after the lookup), or None."""
    row = (
        Batch.objects.filter(batch_id=batch_id)
        .values_list("sha256", "ack_parts", "accepted", "duplicates", "rejected", "terminal__terminal_id")
        .first()
    )
    return StoredBatch(*row) if row is not None else None


class Claim(NamedTuple):
    mark: int | None  # the terminal's high-water mark, under its lock
    ids: list[int]  # an id for each sequence number claimed, in order
    stored: dict[NaturalKey, TapContent]  # the taps among them stored already


def taps_claim(*, terminal: TerminalRow, seqs: list[int]) -> Claim:
    """Under the terminal's row lock: its high-water mark, an id for each of ``seqs`` (the batch's valid
    taps, in order) and the natural keys already stored among those taps whose sequence number is not
    above the mark, each with its stored content. One round trip; a second only when another upload from
    the same terminal committed between the lookup and the lock and raised the mark."""
    known = terminal.last_seq  # as the lookup read it, before the lock
    below = seqs if known is None else [s for s in seqs if s <= known]
    params = [terminal.pk, len(seqs), terminal.pk]
    with connection.cursor() as cur:
        if below:
            claim = statement(cur, "ingest_claim_stored")
            params += [terminal.terminal_id, pg_array(below)]
        else:
            claim = statement(cur, "ingest_claim")
        cur.execute(statement(cur, "ingest_lock") + ";\n" + claim, params)
        rows = cur.fetchall()
        mark, ids = next((row[0], row[1]) for row in rows if row[1] is not None)
        stored = _stored(row for row in rows if row[1] is None)
        if known is not None and mark != known:
            more = [s for s in seqs if s > known and (mark is None or s <= mark)]
            if more:
                cur.execute(statement(cur, "ingest_stored"), [terminal.terminal_id, pg_array(more)])
                stored.update(_stored(cur.fetchall()))
    return Claim(mark, ids, stored)


def _stored(rows: Iterable[tuple]) -> dict[NaturalKey, TapContent]:
    """Rows of _STORED_SQL: (sequence, NULL, card, counter, *content)."""
    return {(card, counter, seq): TapContent(*content) for seq, _, card, counter, *content in rows}


# --- the COPY ------------------------------------------------------------------------------------------


class CopyColumn(NamedTuple):
    column: str  # in terminals_transaction
    attribute: str  # of Tap, or of BatchColumns for the batch's
    escaped: bool = False  # free text: COPY-escaped (the tap's own values are checked digits and hex)
    codes: bool = False  # a list of short codes, as an array literal


# Each tap's own values (differ from tap to tap), then the batch's (the same for every tap), then the
# texts and route that repeat from tap to tap (a terminal's service and route, the issuer's routing),
# made once per distinct profile.
TAP_OWN_COLUMNS = (
    CopyColumn("id", "tx_id"),
    CopyColumn("tapped_at", "tapped_at_text"),
    CopyColumn("idx", "index"),
    CopyColumn("terminal_seq", "terminal_seq"),
    CopyColumn("card_no", "card_no"),
    CopyColumn("issuer", "issuer"),
    CopyColumn("card_counter", "card_counter"),
    CopyColumn("amount_fen", "amount_fen"),
    CopyColumn("balance_before_fen", "balance_before_fen"),
    CopyColumn("balance_after_fen", "balance_after_fen"),
    CopyColumn("tac", "tac"),
    CopyColumn("terminal_no", "terminal_no"),
    CopyColumn("algorithm", "algorithm"),
    CopyColumn("card_trip", "card_trip"),
    CopyColumn("code", "code"),  # base64url, dots and a key id (spec.Token): nothing to escape
)
BATCH_COLUMNS = (
    CopyColumn("received_at", "received_at"),
    CopyColumn("batch_id", "batch_pk"),
    CopyColumn("terminal_id", "terminal_id", escaped=True),
    CopyColumn("kind", "kind"),
    CopyColumn("rule_version", "rule_version"),
    CopyColumn("hotlist_version", "hotlist_version"),
    CopyColumn("acquirer", "acquirer", escaped=True),
)
PROFILE_COLUMNS = (
    CopyColumn("service", "service", escaped=True),
    CopyColumn("route", "route", escaped=True),
    CopyColumn("status", "status", escaped=True),
    CopyColumn("card_scheme", "card_scheme", escaped=True),
    CopyColumn("categories", "categories", codes=True),
    CopyColumn("passes", "passes", codes=True),
    CopyColumn("fare_rule_id", "fare_rule_id", escaped=True),
    CopyColumn("routing", "routing"),
    CopyColumn("issuer_tenant", "issuer_tenant", escaped=True),
    CopyColumn("network", "network", escaped=True),
    CopyColumn("outbox_state", "outbox_state"),  # set by the batch for roaming taps, else empty
)
COPY_COLUMNS = TAP_OWN_COLUMNS + BATCH_COLUMNS + PROFILE_COLUMNS
_COPY_SQL = f"COPY terminals_transaction ({', '.join(c.column for c in COPY_COLUMNS)}) FROM STDIN"


@dataclass(frozen=True)
class BatchColumns:
    """The values every tap of a batch stores alike."""

    received_at: dt.datetime
    batch_pk: int
    terminal_id: str
    rule_version: int
    hotlist_version: int
    acquirer: str  # the acquiring tenant's code
    kind: str = "purchase"


# COPY's text format: a backslash, tab, newline or carriage return inside a value is escaped.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_copy_texts: dict[Any, str] = {}  # free text repeats (services, routes, schemes): escaped once


def _copy_text(value: str) -> str:
    hit = _copy_texts.get(value)
    if hit is None:
        hit = value.translate(_COPY_ESCAPES)
        if len(_copy_texts) < 65_536:
            _copy_texts[value] = hit
    return hit


def _copy_codes(codes: list[str]) -> str:
    """A list of short codes as a quoted array literal in COPY text (codes are [A-Za-z0-9_-])."""
    if not codes:
        return "{}"
    key = tuple(codes)
    hit = _copy_texts.get(key)
    if hit is None:
        hit = pg_array(codes)
        if len(_copy_texts) < 65_536:
            _copy_texts[key] = hit
    return hit


def _copy_value(column: CopyColumn, value: Any) -> str:
    if column.codes:
        return _copy_codes(value)
    if column.escaped:
        return _copy_text(value)
    return value.isoformat() if isinstance(value, dt.datetime) else str(value)


def _copy_fields(columns: tuple[CopyColumn, ...], values: Iterable[Any]) -> str:
    return "\t".join(_copy_value(c, v) for c, v in zip(columns, values, strict=True))


def _generated(name: str, expression: str) -> Callable[[Tap], Any]:
    """A function of a tap made from the column spec, as dataclasses and namedtuple make theirs: the
    f-string or tuple written out runs three times faster per tap than a loop over the columns."""
    namespace: dict[str, Any] = {}
    exec(f"def {name}(tap):\n    return {expression}\n", namespace)
    return namespace[name]


# A tap's own part of its line: its values are checked digits, hex and times, written as they are.
_tap_part = _generated("tap_part", 'f"' + "\\t".join(f"{{tap.{c.attribute}}}" for c in TAP_OWN_COLUMNS) + '"')
# What tells one profile from another (lists as tuples, to be hashed).
_profile_key = _generated(
    "profile_key",
    "("
    + "".join(
        f"tuple(tap.{c.attribute}) if tap.{c.attribute} else None, " if c.codes else f"tap.{c.attribute}, "
        for c in PROFILE_COLUMNS[:-1]
    )
    + ")",
)
_profile_values = operator.attrgetter(*(c.attribute for c in PROFILE_COLUMNS[:-1]))


def copy_lines(taps: list[Tap], *, batch: BatchColumns, roaming_state: str) -> list[str]:
    """One COPY line per tap, in COPY_COLUMNS order. ``roaming_state``: the outbox state of the roaming
    taps. The batch's part is made once, a profile's once per distinct profile (the repeating texts,
    escaped): a tap's own part is all that is made per tap."""
    shared = "\t" + _copy_fields(BATCH_COLUMNS, [getattr(batch, c.attribute) for c in BATCH_COLUMNS]) + "\t"
    profiles: dict[tuple, str] = {}
    lines = []
    for tap in taps:
        key = _profile_key(tap)
        profile = profiles.get(key)
        if profile is None:
            outbox = roaming_state if tap.routing == "roaming" else ""
            profile = profiles[key] = _copy_fields(PROFILE_COLUMNS, (*_profile_values(tap), outbox)) + "\n"
        lines.append(_tap_part(tap) + shared + profile)
    return lines


def taps_copy(lines: list[str]) -> None:
    """The new taps into their month partitions: one COPY through the partitioned table."""
    with connection.cursor() as cur:
        data = "".join(lines).encode()
        cur.cursor.copy_expert(_COPY_SQL, io.BytesIO(data), size=len(data))  # one read, one CopyData


# --- the batch's last writes ---------------------------------------------------------------------------


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


class ExceptionRow(NamedTuple):
    """A held or rejected (or conflicting) tap, for terminals_tapexception."""

    kind: str  # held, rejected
    reason: str
    message: str
    index: int
    tx_id: int | None
    tapped_at: dt.datetime | None
    card_no: str
    issuer: str
    raw: str  # the tap as sent, JSON text


def rejected_row(index: int, raw: Any, reason: str, message: str) -> ExceptionRow:
    """A rejected or conflicting tap as the exceptions table keeps it: what it sent."""
    card = raw.get("card_no") if isinstance(raw, dict) else None
    issuer = raw.get("issuer") if isinstance(raw, dict) else None
    return ExceptionRow(
        "rejected",
        reason,
        message[:300],
        index,
        None,
        None,
        str(card)[:40] if card is not None else "",
        str(issuer)[:10] if issuer is not None else "",
        _dumps(raw),
    )


@dataclass(frozen=True)
class BatchRow:
    """terminals_batch, as _BATCH_SQL inserts it."""

    pk: int
    batch_id: str
    terminal_pk: int
    sha256: str
    created_at: dt.datetime
    received_at: dt.datetime
    clock_skew_s: int
    rule_version: int
    hotlist_version: int
    tap_count: int
    accepted: int
    duplicates: int
    rejected: int
    ack_parts: str
    first_tx_id: int | None
    last_tx_id: int | None
    verified_at: dt.datetime | None


def batch_write(
    *,
    batch: BatchRow,
    flags_sql: tuple[str, list] | None,
    exceptions: list[ExceptionRow],
    top_seq: int | None,
) -> None:
    """The last writes in one round trip: the batch with its acknowledgement (a concurrent upload of the
    same batch id that committed first makes this fail on the unique index: IntegrityError, answered as a
    resend), its flags, its exceptions, and the terminal's high-water mark raised to ``top_seq``."""
    with connection.cursor() as cur:
        sql = [statement(cur, "ingest_batch")]
        params: list[Any] = list(dataclasses.astuple(batch))
        if flags_sql:
            sql.append(flags_sql[0])
            params += flags_sql[1]
        if exceptions:
            sql.append(EXCEPTIONS_SQL)
            params += [batch.pk, batch.received_at, *[pg_array(c) for c in zip(*exceptions, strict=True)]]
        if top_seq is not None:
            sql.append(statement(cur, "ingest_mark"))
            params += [top_seq, top_seq, batch.terminal_pk]
        cur.execute(";\n".join(sql), params)
