"""Taking a terminal's signed batch (批量上传): verify once, validate in one pass, store set-wise.

The path of one upload, in a fixed number of round trips whatever the batch size (8 with django-tenants'
SET search_path, BEGIN and COMMIT, once the month partitions are known; the checks add theirs, 4 today,
see checks.py):

1. size, JSON (floats refused at parse time), signature structure; then **one lookup** reads the terminal
   key named by the signature with its terminal, any batch already stored under the payload's batch id,
   the tenant's current signing key and the acquirer's card TAC master; one Ed25519 verification over the
   canonical payload (orjson when installed, byte-identical to the standard form);
2. terminal active, payload's terminal and tenant match; a stored batch of that id: same content → the
   stored acknowledgement, byte for byte; other content → 409, logged in the audit chain;
3. in the transaction: **the batch row** inserted first (it serialises concurrent resends of one batch id;
   the temp staging table is made ready in the same round trip), each tap validated in one straight pass
   (rejected with a reason, or repeated within the batch → duplicate), routed by issuer (cached);
4. month partitions ensured (cached per process), **COPY** of the valid taps into the staging table, then
   **one statement** inserts the natural keys with ``ON CONFLICT DO NOTHING``, the transactions of the keys
   that were new, and returns each stored tap's previous card counter (the counter-gap check);
5. the checks of checks.CHECKS run over the new taps (TAC: no query, the key came with the lookup; fare
   re-check, hotlist, e-purse shadow: their own set-wise queries); the acknowledgement is written in its
   canonical form directly and signed; roaming taps go to the interop sink if one is wired; **one round
   trip** stores flags, exceptions, the terminal's high-water mark and the acknowledgement; **COMMIT**
   (synchronous: the terminal deletes its batch once acknowledged).

A refusal (``BatchRefused``) happens before anything is written, or rolls everything back.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from citycard.platform.audit.services import audit_record
from citycard.platform.errors import DomainError
from citycard.platform.keys import current_key_from_row, tenant_current_key_sql, tenant_sign_canonical
from citycard.platform.models import KeyPurpose, Tenant, TenantKey
from citycard.platform.sqlarrays import pg_array
from citycard.tenants.terminals import checks as checks_module
from citycard.tenants.terminals.checks import BatchContext, Flag, Tap, clearing_record, route_for
from citycard.tenants.terminals.models import Batch, TerminalStatus, Transaction
from citycard.tenants.terminals.partitions import partitions_ensure
from citycard.terminal_kit.signing import b64decode

try:
    import orjson
except ImportError:  # optional: the standard library gives the same bytes, slower
    orjson = None

log = logging.getLogger(__name__)

TAPPED_AT_MAX_AGE = dt.timedelta(days=400)  # older than this: refused as implausible
TAPPED_AT_MAX_AHEAD = dt.timedelta(days=31)  # further in the future: refused (nearer ones are flagged)
TAP_STATUSES_PREFIX = "torn"  # "complete", or a torn transaction the terminal resolved ("torn_resolved"…)


class BatchRefused(DomainError):
    """The whole upload is refused; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, *, code: str, status: int = 400) -> None:
        super().__init__(message, code=code)
        self.status = status


@dataclass(frozen=True)
class IngestResult:
    body: bytes  # the signed acknowledgement, exactly as sent (and resent)
    replayed: bool
    accepted: int
    duplicates: int
    rejected: int


def _no_float(text: str) -> Any:
    raise ValueError(f"number {text} is not an integer (money is integer fen)")


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not valid JSON")


def canonical_bytes(payload: dict[str, Any]) -> bytes:
    """terminal_kit.signing.canonical_json for a float-free payload (floats are refused at parse time).

    Through orjson when it is installed (about six times faster on a 500-tap batch), whose output for
    such a payload is byte for byte the standard library's (tests/tenants/terminals/test_canonical_json.py);
    what orjson refuses (integers beyond 64 bits, nesting deeper than 254, lone surrogates) goes the
    standard way, with the standard outcome."""
    if orjson is not None:
        try:
            return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # orjson.JSONEncodeError is a TypeError
            pass
    return canonical_bytes_standard(payload)


def canonical_bytes_standard(payload: Any) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _parse_time(value: Any, what: str) -> dt.datetime:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be an ISO 8601 string with an offset")
    moment = dt.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError(f"{what} {value!r} has no UTC offset")
    return moment


_HEX = frozenset("0123456789abcdefABCDEF")
_LUHN_DOUBLE = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def luhn_valid(number: str) -> bool:
    digits = [ord(c) - 48 for c in number]
    return (sum(digits[-1::-2]) + sum(_LUHN_DOUBLE[d] for d in digits[-2::-2])) % 10 == 0


_ALGORITHMS = frozenset((0, 4))


class _Reject(Exception):
    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        self.message = message


_INT_MAX = 2**63 - 1
_TEXT_LIMITS = {"service": 20, "route": 40, "card_scheme": 40, "fare_rule_id": 60}
# Beijing time has had no daylight saving since 1991: a fixed +08:00 gives the same local dates and
# months as Asia/Shanghai for every plausible tap (at most 400 days old) at a fraction of the cost.
_CST = dt.timezone(dt.timedelta(hours=8))
_luhn_cached = lru_cache(maxsize=262_144)(luhn_valid)  # a city's riders tap every day


def _bad_int(name: str, value: Any) -> _Reject:
    if type(value) is not int:
        return _Reject("bad_field", f"{name} must be an integer")
    reason = "negative_amount" if name == "amount_fen" else "bad_field"
    return _Reject(reason, f"{name} {value} is out of range")


def _codes(value: Any, name: str) -> list[str]:
    """A list of short codes (categories, passes); absent, null or empty means none."""
    if not value:
        return []
    if type(value) is not list:
        raise _Reject("bad_field", f"{name} must be a list of short codes")
    for c in value:
        if type(c) is not str or not 0 < len(c) <= 30 or not c.replace("_", "").replace("-", "").isalnum():
            raise _Reject("bad_field", f"{name} must be a list of short codes")
    return value


def _text(value: Any, name: str, *, required: bool) -> str:
    if value is None and not required:
        return ""
    if type(value) is int and name == "fare_rule_id":
        value = str(value)
    if type(value) is not str or (required and not value and name != "route"):
        raise _Reject("bad_field", f"{name} must be a non-empty string")
    limit = _TEXT_LIMITS[name]
    if len(value) > limit:
        raise _Reject("bad_field", f"{name} is longer than {limit} characters")
    return value


def _validate(tap: Any, oldest: dt.datetime, newest: dt.datetime) -> Tap:
    """One tap of the payload, checked completely, or _Reject naming what is wrong (the first problem, in
    a fixed order). ``oldest``/``newest`` bound a plausible tapped_at. This runs for every tap of every
    batch, so it is one straight pass: no helper calls on the common path."""
    if type(tap) is not dict:
        raise _Reject("malformed", "a transaction must be a JSON object")
    get = tap.get
    card_no = get("card_no")
    if type(card_no) is not str or not (12 <= len(card_no) <= 19) or not card_no.isascii():
        raise _Reject("bad_card_no", "card_no must be 12 to 19 digits")
    if not card_no.isdigit() or not _luhn_cached(card_no):
        raise _Reject("bad_card_no", f"card_no {card_no} fails its Luhn check digit")
    issuer = get("issuer")
    if issuer != card_no[:6]:
        raise _Reject("issuer_mismatch", f"issuer {issuer!r} is not the card number's prefix {card_no[:6]}")
    counter = get("card_counter")
    if type(counter) is not int or not 0 <= counter <= _INT_MAX:
        raise _bad_int("card_counter", counter)
    seq = get("terminal_seq")
    if type(seq) is not int or not 0 <= seq <= _INT_MAX:
        raise _bad_int("terminal_seq", seq)
    amount = get("amount_fen")
    if type(amount) is not int or not 0 <= amount <= _INT_MAX:
        raise _bad_int("amount_fen", amount)
    before = get("balance_before_fen")
    if type(before) is not int or not -_INT_MAX <= before <= _INT_MAX:
        raise _bad_int("balance_before_fen", before)
    after = get("balance_after_fen")
    if type(after) is not int or not -_INT_MAX <= after <= _INT_MAX:
        raise _bad_int("balance_after_fen", after)
    if before - amount != after:
        raise _Reject(
            "balance_mismatch",
            f"balance_before_fen {before} − amount_fen {amount} ≠ balance_after_fen {after}",
        )
    stamp = get("tapped_at")
    if type(stamp) is not str:
        raise _Reject("bad_tapped_at", "tapped_at must be an ISO 8601 string with an offset")
    try:
        tapped_at = dt.datetime.fromisoformat(stamp)
    except ValueError as exc:
        raise _Reject("bad_tapped_at", str(exc)) from None
    if tapped_at.tzinfo is None:
        raise _Reject("bad_tapped_at", f"tapped_at {stamp!r} has no UTC offset")
    if tapped_at < oldest or tapped_at > newest:
        raise _Reject("tapped_at_out_of_range", f"tapped_at {tapped_at.isoformat()} is implausible")
    tac = get("tac")
    if type(tac) is not str or not (8 <= len(tac) <= 64) or len(tac) % 2:
        raise _Reject("bad_tac", "tac must be 8 to 64 hex digits")
    if not _HEX.issuperset(tac):
        raise _Reject("bad_tac", "tac is not hexadecimal")
    terminal_no = get("terminal_no")
    if type(terminal_no) is not str or len(terminal_no) != 12 or not _HEX.issuperset(terminal_no):
        raise _Reject("bad_field", "terminal_no must be the SAM's 6-byte terminal number in 12 hex digits")
    algorithm = get("algorithm")
    if type(algorithm) is not int or algorithm not in _ALGORITHMS:
        raise _Reject("bad_field", f"algorithm {algorithm!r} is not a card algorithm id (4 SM4, 0 3DES)")
    kind = get("kind")
    if kind != "purchase":
        raise _Reject("unsupported_kind", f"kind {kind!r} is not taken here (only 'purchase')")
    status = get("status")
    if status != "complete" and (type(status) is not str or not status.startswith(TAP_STATUSES_PREFIX)):
        raise _Reject("bad_status", f"status {status!r} is neither 'complete' nor a torn-resolved variant")
    if len(status) > 30:
        raise _Reject("bad_status", "status is longer than 30 characters")
    categories = _codes(get("categories"), "categories")
    passes = _codes(get("passes"), "passes")
    service = get("service")
    if type(service) is not str or not service or len(service) > 20:
        service = _text(service, "service", required=True)
    route = get("route")
    if type(route) is not str or len(route) > 40:
        route = _text(route, "route", required=True)
    scheme = get("card_scheme", "")
    if type(scheme) is not str or len(scheme) > 40:
        scheme = _text(scheme, "card_scheme", required=False)
    rule_id = get("fare_rule_id", "")
    if type(rule_id) is not str or len(rule_id) > 60:
        rule_id = _text(rule_id, "fare_rule_id", required=False)
    return Tap(
        index=0,
        card_no=card_no,
        issuer=issuer,
        card_counter=counter,
        terminal_seq=seq,
        amount_fen=amount,
        balance_before_fen=before,
        balance_after_fen=after,
        tapped_at=tapped_at,
        service=service,
        route=route,
        tac=tac.lower(),
        terminal_no=terminal_no.lower(),
        algorithm=algorithm,
        kind=kind,
        status=status,
        card_scheme=scheme,
        categories=categories,
        passes=passes,
        fare_rule_id=rule_id,
    )


# --- the request-level checks ---------------------------------------------------------------------


def _load(body: bytes) -> dict[str, Any]:
    limit = settings.TERMINAL_BATCH_MAX_BYTES
    if len(body) > limit:
        raise BatchRefused(
            f"the batch is {len(body)} bytes; the limit is {limit}", code="too_large", status=413
        )
    if b"\\u0000" in body:
        raise BatchRefused("the batch contains a NUL character", code="malformed")
    try:
        document = json.loads(body, parse_float=_no_float, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BatchRefused(f"the body is not valid JSON: {exc}", code="malformed") from None
    if not isinstance(document, dict) or not isinstance(document.get("payload"), dict):
        raise BatchRefused("the body must be a signed document {payload, signature}", code="malformed")
    if document.get("signature") is None:
        raise BatchRefused("the batch is not signed", code="unsigned", status=401)
    return document


@dataclass(frozen=True)
class _Signer:
    """The terminal key named by the signature, its terminal, and any batch already stored under the
    payload's batch id: everything an upload needs to decide, read in one query."""

    public_key: bytes
    retired_at: dt.datetime | None
    verify_until: dt.datetime | None
    pk: int  # the terminal's
    terminal_id: str
    status: str
    status_reason: str
    last_seq: int | None
    stored: tuple | None  # (sha256, ack, accepted, duplicates, rejected, terminal_id) of the batch id
    signing_key: TenantKey  # the tenant's current signing key (for the acknowledgement)
    card_tac_key: TenantKey  # the acquirer's card TAC master (for the TAC check of own cards)


_LOOKUP_SQL = (
    """
SELECT k.public_key, k.retired_at, k.verify_until, t.id, t.terminal_id, t.status, t.status_reason, t.last_seq,
       b.sha256, b.ack, b.accepted, b.duplicates, b.rejected, bt.terminal_id,
       sk.*, tk.*
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


def _verify(document: dict[str, Any], received_at: dt.datetime, tenant: Tenant) -> tuple[_Signer, bytes]:
    signature = document["signature"]
    if not isinstance(signature, dict) or signature.get("alg") != "Ed25519":
        raise BatchRefused("the signature must be {alg: Ed25519, key_id, value}", code="malformed")
    key_id = signature.get("key_id")
    if not isinstance(key_id, str) or not key_id:
        raise BatchRefused("the signature names no key_id", code="malformed")
    batch_id = document["payload"].get("batch_id")
    with connection.cursor() as cur:
        # The stored batch is read now, used only once the signature and the header have passed.
        cur.execute(
            _LOOKUP_SQL,
            [batch_id if isinstance(batch_id, str) else None, tenant.pk, tenant.clearing_tenant.pk, key_id],
        )
        row = cur.fetchone()
    if row is None:
        raise BatchRefused(f"no terminal here signs with key {key_id!r}", code="unknown_terminal", status=403)
    key = _Signer(
        *row[:8],
        stored=row[8:14] if row[8] is not None else None,
        signing_key=current_key_from_row(KeyPurpose.SIGNING, *row[14:17]),
        card_tac_key=current_key_from_row(KeyPurpose.CARD_TAC, *row[17:20]),
    )
    if key.retired_at is not None and (key.verify_until is None or key.verify_until <= received_at):
        raise BatchRefused(
            f"key {key_id!r} was rotated out and its overlap window has ended", code="key_expired", status=401
        )
    try:
        raw = b64decode(str(signature.get("value", "")), what="signature")
    except ValueError as exc:
        raise BatchRefused(str(exc), code="malformed") from None
    canonical = canonical_bytes(document["payload"])
    try:
        Ed25519PublicKey.from_public_bytes(bytes(key.public_key)).verify(raw, canonical)
    except InvalidSignature:
        raise BatchRefused(
            f"the signature by {key_id!r} does not match the batch", code="bad_signature", status=401
        ) from None
    return key, canonical


def _header(payload: dict[str, Any]) -> tuple[str, dt.datetime, int, int, list]:
    batch_id = payload.get("batch_id")
    if not isinstance(batch_id, str) or not (0 < len(batch_id) <= 80):
        raise BatchRefused("batch_id must be a string of 1 to 80 characters", code="malformed")
    try:
        created_at = _parse_time(payload.get("created_at"), "created_at")
    except ValueError as exc:
        raise BatchRefused(str(exc), code="malformed") from None
    versions = [payload.get("rule_version"), payload.get("hotlist_version")]
    if any(type(v) is not int or not (0 <= v < 2**31) for v in versions):
        raise BatchRefused("rule_version and hotlist_version must be integers", code="malformed")
    taps = payload.get("transactions")
    if not isinstance(taps, list):
        raise BatchRefused("transactions must be a list", code="malformed")
    limit = settings.TERMINAL_BATCH_MAX_TAPS
    if len(taps) > limit:
        raise BatchRefused(
            f"the batch holds {len(taps)} taps; the limit is {limit}", code="too_large", status=413
        )
    return batch_id, created_at, versions[0], versions[1], taps


# --- SQL ---------------------------------------------------------------------------------------------

_STAGE_COLUMNS = (
    "idx, tapped_at, card_no, issuer, card_counter, terminal_seq, amount_fen, balance_before_fen,"
    " balance_after_fen, service, route, tac, terminal_no, algorithm, kind, status, card_scheme, categories,"
    " passes, fare_rule_id, routing, issuer_tenant, network, outbox_state"
)
_STAGE_SQL = (
    "CREATE TEMP TABLE IF NOT EXISTS ingest_stage (idx integer, tapped_at timestamptz, card_no text,"
    " issuer text, card_counter bigint, terminal_seq bigint, amount_fen bigint, balance_before_fen bigint,"
    " balance_after_fen bigint, service text, route text, tac text, terminal_no text, algorithm smallint,"
    " kind text, status text, card_scheme text,"
    " categories text[], passes text[], fare_rule_id text, routing text, issuer_tenant text, network text,"
    " outbox_state text) ON COMMIT DELETE ROWS; DELETE FROM ingest_stage"
)
_BATCH_SQL = (
    _STAGE_SQL
    + """;
INSERT INTO terminals_batch (batch_id, terminal_id, sha256, created_at, received_at, clock_skew_s, rule_version,
    hotlist_version, tap_count, accepted, duplicates, rejected, ack)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 0, 0, 0, '')
RETURNING id"""
)
_COPY_SQL = f"COPY ingest_stage ({_STAGE_COLUMNS}) FROM STDIN WITH (FORMAT csv, NULL '\\N')"
_INSERT_SQL = """
WITH fresh AS (
    INSERT INTO terminals_tapkey (card_no, card_counter, terminal_id, terminal_seq, tapped_at, batch_id)
    SELECT card_no, card_counter, %(terminal)s, terminal_seq, tapped_at, %(batch)s FROM ingest_stage
    ON CONFLICT DO NOTHING
    RETURNING card_no, card_counter, terminal_seq
),
stored AS (
INSERT INTO terminals_transaction (tapped_at, received_at, batch_id, idx, terminal_id, terminal_seq, card_no,
    issuer, card_counter, amount_fen, balance_before_fen, balance_after_fen, service, route, tac, terminal_no,
    algorithm, kind, status, card_scheme, categories, passes, fare_rule_id, rule_version, hotlist_version, acquirer,
    routing, issuer_tenant, network, outbox_state)
SELECT s.tapped_at, %(received)s, %(batch)s, s.idx, %(terminal)s, s.terminal_seq, s.card_no, s.issuer,
    s.card_counter, s.amount_fen, s.balance_before_fen, s.balance_after_fen, s.service, s.route, s.tac,
    s.terminal_no, s.algorithm, s.kind, s.status, s.card_scheme, s.categories, s.passes, s.fare_rule_id,
    %(rule_version)s, %(hotlist_version)s, %(acquirer)s, s.routing, s.issuer_tenant, s.network, s.outbox_state
FROM ingest_stage s
JOIN fresh f ON f.card_no = s.card_no AND f.card_counter = s.card_counter AND f.terminal_seq = s.terminal_seq
RETURNING idx, id, card_no, card_counter
),
batch_prev AS (  -- the card's previous counter among the keys this statement stored
    SELECT card_no, card_counter, lag(card_counter) OVER (PARTITION BY card_no ORDER BY card_counter) AS prev
    FROM (SELECT DISTINCT card_no, card_counter FROM fresh) d
)
-- each stored tap with the next lower counter stored for its card (the card-counter gap check): the keys
-- stored before (this statement's snapshot, through the natural-key index) or by this very statement
SELECT t.idx, t.id, GREATEST(
    (SELECT max(k.card_counter) FROM terminals_tapkey k
      WHERE k.card_no = t.card_no AND k.card_counter < t.card_counter),
    b.prev)
FROM stored t JOIN batch_prev b ON b.card_no = t.card_no AND b.card_counter = t.card_counter
"""
_FLAGS_SQL = """
INSERT INTO terminals_reviewflag (transaction_id, tapped_at, batch_id, card_no, code, detail, created_at,
    resolved_by, note)
SELECT f.tx, f.at, %s, f.card, f.code, f.detail::jsonb, %s, '', ''
FROM unnest(%s::bigint[], %s::timestamptz[], %s::text[], %s::text[], %s::text[]) AS f(tx, at, card, code, detail)
"""
_EXCEPTIONS_SQL = """
INSERT INTO terminals_tapexception (kind, reason, message, batch_id, idx, transaction_id, tapped_at, card_no,
    issuer, raw, created_at, resolved_by)
SELECT e.kind, e.reason, e.message, %s, e.idx, e.tx, e.at, e.card, e.issuer, e.raw::jsonb, %s, ''
FROM unnest(%s::text[], %s::text[], %s::text[], %s::int[], %s::bigint[], %s::timestamptz[], %s::text[],
    %s::text[], %s::text[]) AS e(kind, reason, message, idx, tx, at, card, issuer, raw)
"""


def _copy(rows: list[list[Any]]) -> None:
    """The valid taps into the staging table (made ready and emptied with the batch row)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    buffer.seek(0)
    with connection.cursor() as cur:
        cur.cursor.copy_expert(_COPY_SQL, buffer)


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def ack_canonical(
    *,
    batch_id: str,
    terminal_id: str,
    received_at: dt.datetime,
    raw_taps: list,
    outcomes: list[tuple[str, str]],
    counts: dict[str, int],
) -> bytes:
    """The acknowledgement payload in its canonical form: exactly ``canonical_bytes`` of

        {"batch_id", "terminal_id", "received_at", "accepted", "duplicates", "rejected",
         "results": [{"index", "card_no", "card_counter", "terminal_seq", "outcome", "reason"?}, …]}

    (sorted keys, no spaces), but written directly: a result whose card number is plain digits and whose
    counters are integers (every accepted or duplicate tap) is one f-string; anything else goes through
    ``canonical_bytes``. tests/tenants/terminals/test_ack_canonical.py proves the two byte-identical."""
    middles: dict[tuple[str, str], str] = {}
    parts = []
    for index, (outcome, reason) in enumerate(outcomes):
        raw = raw_taps[index]
        if type(raw) is dict:
            card, counter, seq = raw.get("card_no"), raw.get("card_counter"), raw.get("terminal_seq")
        else:
            card = counter = seq = None
        middle = middles.get((outcome, reason))
        if middle is None:
            middle = f',"outcome":{_json_text(outcome)}' + (f',"reason":{_json_text(reason)}' if reason else "")
            middles[(outcome, reason)] = middle
        if type(card) is str and card.isdigit() and card.isascii() and type(counter) is int and type(seq) is int:
            parts.append(
                f'{{"card_counter":{counter},"card_no":"{card}","index":{index}{middle},"terminal_seq":{seq}}}'
            )
        else:
            entry: dict[str, Any] = {
                "index": index,
                "card_no": card,
                "card_counter": counter,
                "terminal_seq": seq,
                "outcome": outcome,
            }
            if reason:
                entry["reason"] = reason
            parts.append(canonical_bytes(entry).decode())
    text = (
        f'{{"accepted":{counts["accepted"]},"batch_id":{_json_text(batch_id)},'
        f'"duplicates":{counts["duplicate"]},"received_at":{_json_text(received_at.isoformat())},'
        f'"rejected":{counts["rejected"]},"results":[{",".join(parts)}],'
        f'"terminal_id":{_json_text(terminal_id)}}}'
    )
    return text.encode()


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


# --- the service ---------------------------------------------------------------------------------------


def batch_ingest(*, tenant: Tenant, body: bytes, received_at: dt.datetime | None = None) -> IngestResult:
    """Take one signed batch uploaded to ``tenant``'s domain; return the signed acknowledgement.

    Raises BatchRefused (nothing written) for a malformed, oversized, unsigned or wrongly signed batch,
    an unknown or suspended terminal, a batch for another tenant, or a batch id reused with other content.
    """
    received_at = received_at or timezone.now()
    document = _load(body)
    terminal, canonical = _verify(document, received_at, tenant)
    payload = document["payload"]
    if payload.get("terminal_id") != terminal.terminal_id:
        raise BatchRefused(
            f"the batch claims terminal {payload.get('terminal_id')!r} but is signed by {terminal.terminal_id}'s key",
            code="foreign_signature",
            status=403,
        )
    if terminal.status != TerminalStatus.ACTIVE:
        raise BatchRefused(
            f"terminal {terminal.terminal_id} is suspended: {terminal.status_reason or 'no reason given'}",
            code="terminal_suspended",
            status=403,
        )
    if payload.get("tenant") != tenant.code:
        raise BatchRefused(
            f"the batch is for tenant {payload.get('tenant')!r}, this is {tenant.code}",
            code="wrong_tenant",
            status=403,
        )
    batch_id, created_at, rule_version, hotlist_version, raw_taps = _header(payload)
    sha = hashlib.sha256(canonical).hexdigest()

    if terminal.stored is not None:
        return _resend(terminal.stored, batch_id, sha, terminal.terminal_id, tenant)
    try:
        return _ingest_new(
            tenant=tenant,
            terminal=terminal,
            batch_id=batch_id,
            sha=sha,
            created_at=created_at,
            received_at=received_at,
            rule_version=rule_version,
            hotlist_version=hotlist_version,
            raw_taps=raw_taps,
        )
    except IntegrityError:
        # Another upload of the same batch id committed first: answer as for a resend.
        existing = _existing(batch_id, sha, terminal.terminal_id, tenant)
        if existing is None:
            raise
        return existing


def _existing(batch_id: str, sha: str, terminal_id: str, tenant: Tenant) -> IngestResult | None:
    row = (
        Batch.objects.filter(batch_id=batch_id)
        .values_list("sha256", "ack", "accepted", "duplicates", "rejected", "terminal__terminal_id")
        .first()
    )
    if row is None:
        return None
    return _resend(row, batch_id, sha, terminal_id, tenant)


def _resend(row: tuple, batch_id: str, sha: str, terminal_id: str, tenant: Tenant) -> IngestResult:
    """A batch id already stored: the same content gets the stored acknowledgement, other content 409."""
    if row[0] == sha and row[5] == terminal_id:
        return IngestResult(row[1].encode(), True, row[2], row[3], row[4])
    log.warning(
        "batch %s from %s conflicts with the stored one (sha256 %s ≠ %s)", batch_id, terminal_id, sha, row[0]
    )
    audit_record(
        action="terminal.batch_conflict",
        actor=f"terminal:{terminal_id}",
        object_type="batch",
        object_id=batch_id,
        data={"sha256": sha, "stored_sha256": row[0], "stored_terminal": row[5], "tenant": tenant.code},
    )
    raise BatchRefused(
        f"batch {batch_id} was already received with different content", code="batch_conflict", status=409
    )


@transaction.atomic
def _ingest_new(
    *,
    tenant: Tenant,
    terminal,
    batch_id: str,
    sha: str,
    created_at: dt.datetime,
    received_at: dt.datetime,
    rule_version: int,
    hotlist_version: int,
    raw_taps: list,
) -> IngestResult:
    skew = int((created_at - received_at).total_seconds())
    with connection.cursor() as cur:
        # First write of the upload: a concurrent upload of the same batch id waits here on the unique
        # index, then fails (IntegrityError) and answers as a resend. The staging table is made ready in
        # the same round trip.
        cur.execute(
            _BATCH_SQL,
            [
                batch_id,
                terminal.pk,
                sha,
                created_at,
                received_at,
                max(min(skew, 2**31 - 1), -(2**31)),
                rule_version,
                hotlist_version,
                len(raw_taps),
            ],
        )
        batch_pk = cur.fetchone()[0]
    acquirer = tenant.clearing_tenant

    outcomes: list[tuple[str, str]] = [("", "")] * len(raw_taps)  # (outcome, reason) per index
    valid: list[Tap] = []
    seen: set[tuple[str, int, int]] = set()
    all_seqs: list[int] = []
    routes: dict[tuple[str, dt.date], Any] = {}
    months: set[tuple[int, int]] = set()
    rows: list[list[Any]] = []
    rejected: list[tuple[int, Any, _Reject]] = []
    oldest, newest = received_at - TAPPED_AT_MAX_AGE, received_at + TAPPED_AT_MAX_AHEAD
    for index, raw in enumerate(raw_taps):
        try:
            tap = _validate(raw, oldest, newest)
        except _Reject as exc:
            outcomes[index] = ("rejected", exc.reason)
            rejected.append((index, raw, exc))
            if isinstance(raw, dict) and type(raw.get("terminal_seq")) is int:
                all_seqs.append(raw["terminal_seq"])
            continue
        all_seqs.append(tap.terminal_seq)
        natural = (tap.card_no, tap.card_counter, tap.terminal_seq)
        if natural in seen:
            outcomes[index] = ("duplicate", "repeated in this batch")
            continue
        seen.add(natural)
        tap.index = index
        local = tap.tapped_at.astimezone(_CST)
        months.add((local.year, local.month))
        route_key = (tap.issuer, local.date())
        route = routes.get(route_key)
        if route is None:
            route = routes[route_key] = route_for(acquirer=acquirer, issuer=tap.issuer, on=local.date())
        tap.routing, tap.issuer_tenant, tap.network = route.routing, route.issuer_tenant, route.network
        valid.append(tap)
        rows.append(
            [
                index,
                tap.tapped_at.isoformat(),
                tap.card_no,
                tap.issuer,
                tap.card_counter,
                tap.terminal_seq,
                tap.amount_fen,
                tap.balance_before_fen,
                tap.balance_after_fen,
                tap.service,
                tap.route,
                tap.tac,
                tap.terminal_no,
                tap.algorithm,
                tap.kind,
                tap.status,
                tap.card_scheme,
                pg_array(tap.categories) if tap.categories else "{}",  # quoted: a code NULL stays a code
                pg_array(tap.passes) if tap.passes else "{}",
                tap.fare_rule_id,
                tap.routing,
                tap.issuer_tenant,
                tap.network,
                "pending" if tap.routing == "roaming" else "",
            ]
        )

    new: list[Tap] = []
    if rows:
        partitions_ensure(months)
        _copy(rows)
        with connection.cursor() as cur:
            cur.execute(
                _INSERT_SQL,
                {
                    "terminal": terminal.terminal_id,
                    "batch": batch_pk,
                    "received": received_at,
                    "rule_version": rule_version,
                    "hotlist_version": hotlist_version,
                    "acquirer": acquirer.code,
                },
            )
            stored = {idx: (tx_id, prev) for idx, tx_id, prev in cur.fetchall()}
        for tap in valid:
            found = stored.get(tap.index)
            if found is None:
                outcomes[tap.index] = ("duplicate", "already received")
            else:
                tap.tx_id, tap.prev_counter = found
                outcomes[tap.index] = ("accepted", "")
                new.append(tap)

    ctx = BatchContext(
        tenant=tenant,
        acquirer=acquirer,
        terminal_pk=terminal.pk,
        terminal_id=terminal.terminal_id,
        terminal_last_seq=terminal.last_seq,
        batch_pk=batch_pk,
        batch_id=batch_id,
        received_at=received_at,
        terminal_clock=created_at,
        rule_version=rule_version,
        hotlist_version=hotlist_version,
        all_terminal_seqs=tuple(all_seqs),
        card_tac_key=terminal.card_tac_key,
    )
    flags: list[Flag] = []
    for check in checks_module.CHECKS:
        flags.extend(check(ctx, new))
    counts = {"accepted": 0, "duplicate": 0, "rejected": 0}
    for outcome, _reason in outcomes:
        counts[outcome] += 1
    canonical = ack_canonical(
        batch_id=batch_id,
        terminal_id=terminal.terminal_id,
        received_at=received_at,
        raw_taps=raw_taps,
        outcomes=outcomes,
        counts=counts,
    )
    body = tenant_sign_canonical(tenant=tenant, canonical=canonical, key=terminal.signing_key)
    _hand_off_roaming(ctx, new)

    # The last writes in one round trip: flags, exceptions, the terminal's high-water mark, the ack.
    statements: list[str] = []
    params: list[Any] = []
    if flags:
        statements.append(_FLAGS_SQL)
        params += _flag_params(batch_pk, received_at, flags)
    exceptions = _exception_params(batch_pk, received_at, new, rejected, routes)
    if exceptions:
        statements.append(_EXCEPTIONS_SQL)
        params += exceptions
    top = max(all_seqs) if all_seqs else None
    if top is not None and (terminal.last_seq is None or top > terminal.last_seq):
        statements.append(
            "UPDATE terminals_terminal SET last_seq = GREATEST(COALESCE(last_seq, %s), %s) WHERE id = %s"
        )
        params += [top, top, terminal.pk]
    statements.append(
        "UPDATE terminals_batch SET ack = %s, accepted = %s, duplicates = %s, rejected = %s WHERE id = %s"
    )
    params += [body.decode(), counts["accepted"], counts["duplicate"], counts["rejected"], batch_pk]
    with connection.cursor() as cur:
        cur.execute(";\n".join(statements), params)
    return IngestResult(body, False, counts["accepted"], counts["duplicate"], counts["rejected"])


def _flag_params(batch_pk: int, at: dt.datetime, flags: list[Flag]) -> list[Any]:
    return [
        batch_pk,
        at,
        pg_array(f.tap.tx_id for f in flags),
        pg_array(f.tap.tapped_at for f in flags),
        pg_array(f.tap.card_no for f in flags),
        pg_array(f.code for f in flags),
        pg_array(_dumps(f.detail) for f in flags),
    ]


def _exception_params(batch_pk: int, at: dt.datetime, new: list[Tap], rejected: list, routes: dict) -> list[Any]:
    """The parameters of _EXCEPTIONS_SQL for the held and the rejected taps; [] when there are none."""
    entries = []
    for tap in new:
        if tap.routing == "held":
            route = routes[(tap.issuer, tap.tapped_at.astimezone(_CST).date())]
            entries.append(
                (
                    "held",
                    route.reason,
                    route.message,
                    tap.index,
                    tap.tx_id,
                    tap.tapped_at,
                    tap.card_no,
                    tap.issuer,
                    "{}",
                )
            )
    for index, raw, exc in rejected:
        card = raw.get("card_no") if isinstance(raw, dict) else None
        issuer = raw.get("issuer") if isinstance(raw, dict) else None
        entries.append(
            (
                "rejected",
                exc.reason,
                exc.message[:300],
                index,
                None,
                None,
                str(card)[:40] if card is not None else "",
                str(issuer)[:10] if issuer is not None else "",
                _dumps(raw),
            )
        )
    if not entries:
        return []
    return [batch_pk, at, *[pg_array(c) for c in zip(*entries, strict=True)]]


def _hand_off_roaming(ctx: BatchContext, new: list[Tap]) -> None:
    sink = checks_module.ROAMING_SINK
    if sink is None:
        return
    roaming = [t for t in new if t.routing == "roaming"]
    if not roaming:
        return
    records = [
        clearing_record(
            ctx_acquirer=ctx.acquirer.code, batch_id=ctx.batch_id, terminal_id=ctx.terminal_id, tap=t
        )
        for t in roaming
    ]
    sink(records, f"terminal:{ctx.terminal_id}")
    Transaction.objects.filter(
        Q(id__in=[t.tx_id for t in roaming]), tapped_at__gte=min(t.tapped_at for t in roaming)
    ).update(outbox_state="sent")
