"""Taking a terminal's signed batch (批量上传): verify once, validate in one pass, store set-wise.

The path of one upload, in a fixed number of round trips whatever the batch size (5 with django-tenants'
SET search_path, BEGIN and COMMIT once the month partitions are known, plus the COPY):

1. size; the body decoded in the common form (``common_decode``: msgspec, typed, compact, every tap
   checked) or else the general way (``wire.read_json``: orjson when installed; floats, repeated keys,
   deep nesting, lone surrogates… refused, each with its message); signature structure; **one lookup** reads
   the terminal key named by the signature with its terminal, any batch already stored under the
   payload's batch id, the tenant's current signing key, the acquirer's card TAC master and the id a new
   batch gets; one Ed25519 verification over the canonical payload (orjson when installed,
   byte-identical to the standard form);
2. terminal active, payload's terminal and tenant match; a stored batch of that id: same content → the
   same acknowledgement, byte for byte (``ack_rebuild``: from the outcomes and signature stored with the
   batch and the resent taps); other content → 409, logged in the audit chain;
3. in the transaction: each tap validated in one straight pass unless the common form checked it
   (rejected with a reason: then nothing of it is taken, not even its sequence number; or repeated within
   the batch → duplicate, or conflict if its content differs) and routed by issuer (cached);
4. month partitions ensured (cached per process); **the claim**: the terminal's row locked (its
   uploads take turns), its high-water mark read, an id drawn for each valid tap, and the taps whose
   sequence number is not above the mark (resends, late taps) looked up among the stored ones by
   (terminal, sequence): a stored natural key is a duplicate (the same content) or a conflict (other
   content), never stored twice; **COPY** of the new
   taps straight into the month partitions;
5. the batch's own checks (checks.BATCH_CHECKS: clock skew, terminal sequence gaps); the checks against
   stored data (checks.STORED_CHECKS) and the roaming hand-off run here only with
   ``TERMINAL_VERIFY = "inline"``, else in the verification stage (verify.py) after the commit; the
   acknowledgement is written in its canonical form directly and signed; **one round trip** stores the
   batch row with what its acknowledgement is made of (``ack_parts``), flags, exceptions and the
   terminal's high-water mark; **COMMIT** (synchronous: the terminal deletes its batch once acknowledged).

A refusal (``BatchRefused``) happens before anything is written, or rolls everything back.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import operator
import weakref
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from citycard.platform.audit.services import audit_record
from citycard.platform.errors import DomainError
from citycard.platform.keys import current_key_from_row, signed_body, tenant_current_key_sql, tenant_signature
from citycard.platform.models import KeyPurpose, Tenant, TenantKey
from citycard.platform.sqlarrays import pg_array
from citycard.tenants.terminals import checks as checks_module
from citycard.tenants.terminals.checks import (
    BatchContext,
    Flag,
    StoredContext,
    Tap,
    clearing_record,
    route_for,
)
from citycard.tenants.terminals.models import Batch, TerminalStatus
from citycard.tenants.terminals.partitions import partitions_ensure
from citycard.tenants.terminals.verify import flags_sql, taps_verify, verify_inline
from citycard.tenants.terminals.wire import (
    Unreadable,
    canonical_bytes,
    read_json,
    repeated_keys_refuse,
)
from citycard.terminal_kit.beijing import BEIJING as _CST
from citycard.terminal_kit.cardno import luhn_valid
from citycard.terminal_kit.signing import b64decode

try:
    import msgspec
except ImportError:  # optional: every batch then takes the general path
    msgspec = None

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
    conflicts: int = 0  # taps whose natural key came with other content before (stored or in this batch)
    terminal_id: str = ""  # the terminal whose key signed the batch
    # Rejected taps by reason (a stored batch's; a resend's are not counted again: empty).
    rejected_by_reason: dict[str, int] = field(default_factory=dict)


def _parse_time(value: Any, what: str) -> dt.datetime:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be an ISO 8601 string with an offset")
    moment = dt.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError(f"{what} {value!r} has no UTC offset")
    return moment


_HEX = frozenset("0123456789abcdefABCDEF")
_ALGORITHMS = frozenset((0, 4))


class _Reject(Exception):
    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        self.message = message


_INT_MAX = 2**63 - 1  # PostgreSQL bigint: sequence numbers, card counters, amounts and balances
_INT4_MAX = 2**31 - 1  # PostgreSQL integer: rule and hotlist versions
_TEXT_LIMITS = {"service": 20, "route": 40, "card_scheme": 40, "fare_rule_id": 60}
_LUHN_GOOD: set[str] = set()  # card numbers that passed: a city's riders tap every day
_LUHN_GOOD_MAX = 262_144


def _luhn_cached(card_no: str) -> bool:
    if card_no in _LUHN_GOOD:
        return True
    if not luhn_valid(card_no):
        return False
    if len(_LUHN_GOOD) >= _LUHN_GOOD_MAX:
        _LUHN_GOOD.clear()
    _LUHN_GOOD.add(card_no)
    return True


def _bad_int(name: str, value: Any, low: int) -> _Reject:
    """What is wrong with an integer field outside ``low`` to _INT_MAX (its column's range)."""
    if type(value) is not int:
        return _Reject("bad_field", f"{name} must be an integer")
    reason = "negative_amount" if name == "amount_fen" and value < 0 else "bad_field"
    return _Reject(reason, f"{name} {value} is out of range ({low} to {_INT_MAX})")


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


@dataclass(frozen=True)
class TapWindow:
    """The plausible tapped_at of a batch's taps, as instants and as Beijing-time text in the form
    terminals send (YYYY-MM-DDTHH:MM:SS+08:00), which sorts like the instants it names: a tap stamped
    in that form is checked by comparing strings, some forty times cheaper than comparing aware
    datetimes of different offsets (three times per tap). The text bounds are rounded inwards to whole
    seconds, the precision of that form, so both ways give the same answer."""

    oldest: dt.datetime
    newest: dt.datetime
    oldest_text: str
    newest_text: str


def _beijing_text(moment: dt.datetime) -> str:
    return moment.astimezone(_CST).strftime("%Y-%m-%dT%H:%M:%S+08:00")


def tap_window(received_at: dt.datetime) -> TapWindow:
    oldest, newest = received_at - TAPPED_AT_MAX_AGE, received_at + TAPPED_AT_MAX_AHEAD
    low = oldest + dt.timedelta(microseconds=1_000_000 - oldest.microsecond) if oldest.microsecond else oldest
    return TapWindow(oldest, newest, _beijing_text(low), _beijing_text(newest.replace(microsecond=0)))


def _validate(tap: Any, window: TapWindow) -> Tap:
    """One tap of the payload, checked completely, or _Reject naming what is wrong (the first problem, in
    a fixed order). ``window`` bounds a plausible tapped_at. This runs for every tap of every batch, so
    it is one straight pass: no helper calls on the common path."""
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
        raise _bad_int("card_counter", counter, 0)
    seq = get("terminal_seq")
    if type(seq) is not int or not 0 <= seq <= _INT_MAX:
        raise _bad_int("terminal_seq", seq, 0)
    amount = get("amount_fen")
    if type(amount) is not int or not 0 <= amount <= _INT_MAX:
        raise _bad_int("amount_fen", amount, 0)
    before = get("balance_before_fen")
    if type(before) is not int or not -_INT_MAX <= before <= _INT_MAX:
        raise _bad_int("balance_before_fen", before, -_INT_MAX)
    after = get("balance_after_fen")
    if type(after) is not int or not -_INT_MAX <= after <= _INT_MAX:
        raise _bad_int("balance_after_fen", after, -_INT_MAX)
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
    if (
        len(stamp) == 25
        and stamp[19:] == "+08:00"
        and stamp[10] == "T"
        and stamp[4] == stamp[7] == "-"
        and stamp[13] == stamp[16] == ":"
    ):
        if stamp < window.oldest_text or stamp > window.newest_text:
            raise _Reject("tapped_at_out_of_range", f"tapped_at {tapped_at.isoformat()} is implausible")
    else:
        if tapped_at < window.oldest or tapped_at > window.newest:
            raise _Reject("tapped_at_out_of_range", f"tapped_at {tapped_at.isoformat()} is implausible")
        if not (
            len(stamp) == 25
            and stamp[10] == "T"
            and stamp[4] == stamp[7] == "-"
            and stamp[13] == stamp[16] == stamp[22] == ":"
            and stamp[19] in "+-"
            and stamp[20:22] <= "14"  # the world's offsets; PostgreSQL refuses beyond 15:59, Python does not
        ):
            # The same instant in a form PostgreSQL reads, as text for the COPY and as the datetime the
            # checks send (Python also reads offsets with seconds and fractions, up to 23:59:59.999999).
            tapped_at = tapped_at.astimezone(dt.UTC)
            stamp = tapped_at.isoformat()
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
    card_trip = get("card_trip", "")
    if type(card_trip) is not str or len(card_trip) > 256 or len(card_trip) % 2 or not set(card_trip) <= _HEX:
        raise _Reject("bad_field", "card_trip must be the card's transit record in hex, at most 128 bytes")
    # Positional, in the field order of checks.Tap (a third of the keyword call's cost, 500 times a batch);
    # tests/tenants/terminals/test_validate_fast.py compares every field with a keyword-built reference.
    return Tap(
        0,  # index
        card_no,
        issuer,
        counter,
        seq,
        amount,
        before,
        after,
        tapped_at,
        service,
        route,
        tac.lower(),
        terminal_no.lower(),
        algorithm,
        kind,
        status,
        scheme,
        categories,
        rule_id,  # fare_rule_id
        "",  # routing
        "",  # issuer_tenant
        "",  # network
        0,  # tx_id
        passes,
        stamp,  # tapped_at_text
        card_trip=card_trip.lower(),
    )


# --- the common form, decoded in C ------------------------------------------------------------------
#
# Terminals built on terminal_kit send every batch in one form: the same fields, the same types, Beijing
# time, compact JSON. ``common_decode`` decodes a body of that form straight into typed structs (msgspec:
# types, ranges and lengths checked in C, a float anywhere refused), writes the payload's canonical bytes
# from them (a body longer than those bytes and the signature's repeats a key or has whitespace: not
# the common form), and runs the checks C cannot (Luhn, issuer prefix, balance arithmetic, time window,
# hex digits) over each tap. It answers None whenever the body is anything else, and a signature that does not verify
# over its bytes sends the batch the general way too (``_NotCommon``): so it never decides differently from
# the general path, ``_load`` + ``_validate`` (tests/tenants/terminals/test_common_form.py), it only
# decides the usual batch in a third of the time.

_SAFE_INT = 2**63 - 1


class _NotCommon(Exception):
    """The batch is not in the common form after all: take the general path (nothing is written yet)."""


@dataclass(frozen=True)
class CommonBatch:
    document: dict[str, Any]  # {"payload": {header fields, "transactions": [Tap…]}, "signature": {…}}
    canonical: bytes  # the payload's canonical JSON, if the body is what the terminal signed


if msgspec is not None:
    from typing import Annotated

    from msgspec import UNSET, Meta, Struct, UnsetType

    _Count = Annotated[int, Meta(ge=0, le=_SAFE_INT)]
    _Balance = Annotated[int, Meta(ge=-_SAFE_INT, le=_SAFE_INT)]

    # Fields in sorted order, optional ones UNSET when absent (and then not written): encoding gives the
    # canonical bytes of exactly what was sent.
    class _TapIn(Struct, kw_only=True, forbid_unknown_fields=True):
        algorithm: int
        amount_fen: _Count
        balance_after_fen: _Balance
        balance_before_fen: _Balance
        card_counter: _Count
        card_no: Annotated[str, Meta(min_length=12, max_length=19)]
        card_scheme: Annotated[str, Meta(max_length=40)] | UnsetType = UNSET
        categories: list[str] | UnsetType = UNSET
        fare_rule_id: Annotated[str, Meta(max_length=60)] | UnsetType = UNSET
        issuer: str
        kind: str
        passes: list[str] | UnsetType = UNSET
        route: Annotated[str, Meta(max_length=40)]
        service: Annotated[str, Meta(min_length=1, max_length=20)]
        status: Annotated[str, Meta(max_length=30)]
        tac: Annotated[str, Meta(min_length=8, max_length=64)]
        tapped_at: Annotated[str, Meta(min_length=25, max_length=25)]
        terminal_no: Annotated[str, Meta(min_length=12, max_length=12)]
        terminal_seq: _Count

    class _PayloadIn(Struct, forbid_unknown_fields=True):
        batch_id: str
        created_at: str
        hotlist_version: int
        rule_version: int
        tenant: str
        terminal_id: str
        transactions: list[_TapIn]

    class _SignatureIn(Struct, forbid_unknown_fields=True):
        alg: str
        key_id: str
        value: str

    class _DocumentIn(Struct, forbid_unknown_fields=True):
        payload: _PayloadIn
        signature: _SignatureIn

    _decode_document = msgspec.json.Decoder(_DocumentIn).decode
    _encode = msgspec.json.Encoder().encode
    _DecodeError = msgspec.DecodeError


def _common_codes(value: Any) -> list[str] | None:
    """A tap's categories or passes as _codes takes them, or None if _codes refuses them."""
    if value is UNSET or not value:
        return []
    try:
        return _codes(value, "codes")
    except _Reject:
        return None


def common_decode(body: bytes, window: TapWindow) -> CommonBatch | None:
    """The batch decoded and every tap checked, if the body is in the common form and every tap passes;
    None for anything else (the general path then decides, with its reasons)."""
    if msgspec is None:
        return None
    try:
        document = _decode_document(body)
    except (_DecodeError, ValueError, RecursionError):  # ValueError: an unknown key that is not UTF-8
        return None
    payload = document.payload
    canonical = _encode(payload)
    # A key repeated anywhere (msgspec keeps the last) makes the body longer than the document's minimal
    # encoding, which is this length (wire.repeated_keys_refuse); so does whitespace: the general way reads it.
    if len(body) != len(canonical) + len(_encode(document.signature)) + len('{"payload":,"signature":}'):
        return None
    oldest, newest = window.oldest_text, window.newest_text
    taps = []
    append = taps.append
    good = _LUHN_GOOD
    for t in payload.transactions:
        card_no = t.card_no
        if card_no not in good and not (card_no.isascii() and card_no.isdigit() and _luhn_cached(card_no)):
            return None
        amount, before, after = t.amount_fen, t.balance_before_fen, t.balance_after_fen
        stamp, tac, terminal_no, status = t.tapped_at, t.tac, t.terminal_no, t.status
        if (
            t.issuer != card_no[:6]
            or before - amount != after
            or stamp[19:] != "+08:00"
            or stamp < oldest
            or stamp > newest
            or stamp[10] != "T"
            or stamp[4] != "-"
            or stamp[7] != "-"
            or stamp[13] != ":"
            or stamp[16] != ":"
            or len(tac) % 2
            or not _HEX.issuperset(tac)
            or not _HEX.issuperset(terminal_no)
            or t.algorithm not in _ALGORITHMS
            or t.kind != "purchase"
            or (status != "complete" and not status.startswith(TAP_STATUSES_PREFIX))
        ):
            return None
        try:
            tapped_at = dt.datetime.fromisoformat(stamp)
        except ValueError:
            return None
        categories, passes = _common_codes(t.categories), _common_codes(t.passes)
        if categories is None or passes is None:
            return None
        scheme, rule_id = t.card_scheme, t.fare_rule_id
        append(
            Tap(
                0,  # index
                card_no,
                t.issuer,
                t.card_counter,
                t.terminal_seq,
                amount,
                before,
                after,
                tapped_at,
                t.service,
                t.route,
                tac.lower(),
                terminal_no.lower(),
                t.algorithm,
                "purchase",
                status,
                "" if scheme is UNSET else scheme,
                categories,
                "" if rule_id is UNSET else rule_id,
                "",  # routing
                "",  # issuer_tenant
                "",  # network
                0,  # tx_id
                passes,
                stamp,  # tapped_at_text
            )
        )
    signature = document.signature
    return CommonBatch(
        document={
            "payload": {
                "batch_id": payload.batch_id,
                "terminal_id": payload.terminal_id,
                "tenant": payload.tenant,
                "created_at": payload.created_at,
                "rule_version": payload.rule_version,
                "hotlist_version": payload.hotlist_version,
                "transactions": taps,
            },
            "signature": {"alg": signature.alg, "key_id": signature.key_id, "value": signature.value},
        },
        canonical=canonical,
    )


# --- the request-level checks ---------------------------------------------------------------------


def _check_body(body: bytes) -> None:
    limit = settings.TERMINAL_BATCH_MAX_BYTES
    if len(body) > limit:
        raise BatchRefused(
            f"the batch is {len(body)} bytes; the limit is {limit}", code="too_large", status=413
        )
    if b"\\u0000" in body:
        raise BatchRefused("the batch contains a NUL character", code="malformed")


def _read(body: bytes) -> tuple[dict[str, Any], bytes]:
    """The signed document of the general path and its payload's canonical bytes (what the signature
    must cover), or BatchRefused for a body that cannot be read (wire.read_json) or is not a signed
    document."""
    _check_body(body)
    try:
        document = read_json(body)
        if not isinstance(document, dict) or not isinstance(document.get("payload"), dict):
            raise BatchRefused("the body must be a signed document {payload, signature}", code="malformed")
        canonical = canonical_bytes(document["payload"])
        repeated_keys_refuse(body, document, canonical)
    except Unreadable as exc:
        raise BatchRefused(exc.message, code="malformed") from None
    if document.get("signature") is None:
        raise BatchRefused("the batch is not signed", code="unsigned", status=401)
    return document, canonical


def _load(body: bytes) -> dict[str, Any]:
    """The signed document of the general path (``_read`` without the canonical bytes)."""
    return _read(body)[0]


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
    stored: tuple | None  # (sha256, ack_parts, accepted, duplicates, rejected, terminal_id) of the batch id
    signing_key: TenantKey  # the tenant's current signing key (for the acknowledgement)
    card_tac_key: TenantKey  # the acquirer's card TAC master (for the TAC check of own cards)
    batch_pk: int  # the id the batch gets if it is new (drawn from the batch table's sequence)


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


# The upload's own queries as server-side prepared statements, one set per connection and schema, so
# each is planned once instead of on every upload (~0.6 ms of database time per batch, most of it the
# planning of the lookup's joins and of the partitioned table). A connection keeps the statements of at
# most _PREPARED_SCHEMAS schemas (a worker serves many tenants); past that it deallocates them all and
# starts again. CITYCARD_TERMINAL_PREPARED_STATEMENTS=off sends the plain SQL (for a pooler that does not
# keep a session's prepared statements, e.g. PgBouncer in transaction mode).
_PREPARED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # driver connection -> schemas prepared
_PREPARED_SCHEMAS = 32


def _numbered(sql: str) -> str:
    parts = sql.split("%s")
    return parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], start=1))


def _statement(cur, name: str) -> str:
    """What to send for the upload's statement ``name`` (a key of _STATEMENTS) with its ``%s``
    parameters: the EXECUTE of its prepared statement (all of them prepared, in one round trip, the first
    time this connection works in this schema), or the plain SQL."""
    sql = _STATEMENTS[name]
    if not settings.TERMINAL_PREPARED_STATEMENTS:
        return sql
    raw = connection.connection
    schema = connection.schema_name
    schemas = _PREPARED.get(raw)
    if schemas is None:
        schemas = _PREPARED[raw] = set()
    if schema not in schemas:
        if len(schemas) >= _PREPARED_SCHEMAS:
            cur.execute("DEALLOCATE ALL")
            schemas.clear()
        cur.execute(
            ";\n".join(
                f'PREPARE "{other}_{schema}" AS {_numbered(text)}' for other, text in _STATEMENTS.items()
            )
        )
        schemas.add(schema)
    return f'EXECUTE "{name}_{schema}" ({", ".join(["%s"] * sql.count("%s"))})'


def _verify(
    document: dict[str, Any], received_at: dt.datetime, tenant: Tenant, canonical: bytes, *, common: bool
) -> _Signer:
    """The signer, whose signature verified over ``canonical``, the payload's canonical bytes (if the
    common form gave them and the signature is over other bytes: _NotCommon)."""
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
            _statement(cur, "ingest_lookup"),
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
        batch_pk=row[20],
    )
    if key.retired_at is not None and (key.verify_until is None or key.verify_until <= received_at):
        raise BatchRefused(
            f"key {key_id!r} was rotated out and its overlap window has ended", code="key_expired", status=401
        )
    try:
        raw = b64decode(str(signature.get("value", "")), what="signature")
    except ValueError as exc:
        raise BatchRefused(str(exc), code="malformed") from None
    try:
        Ed25519PublicKey.from_public_bytes(bytes(key.public_key)).verify(raw, canonical)
    except InvalidSignature:
        if common:
            raise _NotCommon from None
        raise BatchRefused(
            f"the signature by {key_id!r} does not match the batch", code="bad_signature", status=401
        ) from None
    return key


def _header(payload: dict[str, Any]) -> tuple[str, dt.datetime, int, int, list]:
    batch_id = payload.get("batch_id")
    if not isinstance(batch_id, str) or not (0 < len(batch_id) <= 80):
        raise BatchRefused("batch_id must be a string of 1 to 80 characters", code="malformed")
    try:
        created_at = _parse_time(payload.get("created_at"), "created_at")
    except ValueError as exc:
        raise BatchRefused(str(exc), code="malformed") from None
    try:
        # In UTC: a time PostgreSQL reads (Python reads offsets it does not: seconds, fractions, beyond
        # 15:59), within years 1 to 9999 as every reader of the batch holds it.
        created_at = created_at.astimezone(dt.UTC)
    except OverflowError:
        raise BatchRefused(f"created_at {created_at.isoformat()} is out of range", code="malformed") from None
    versions = [payload.get("rule_version"), payload.get("hotlist_version")]
    for name, value in zip(("rule_version", "hotlist_version"), versions, strict=True):
        if type(value) is not int:
            raise BatchRefused(f"{name} must be an integer", code="malformed")
        if not 0 <= value <= _INT4_MAX:
            raise BatchRefused(f"{name} {value} is out of range (0 to {_INT4_MAX})", code="malformed")
    taps = payload.get("transactions")
    if not isinstance(taps, list):
        raise BatchRefused("transactions must be a list", code="malformed")
    limit = settings.TERMINAL_BATCH_MAX_TAPS
    if len(taps) > limit:
        raise BatchRefused(
            f"the batch holds {len(taps)} taps; the limit is {limit}", code="too_large", status=413
        )
    return batch_id, created_at, versions[0], versions[1], taps


# --- resends and conflicts ---------------------------------------------------------------------------

# What a tap says besides its natural key (card, counter, terminal, sequence): Tap fields, stored in the
# transaction columns of the same names. A tap sent again under a key already taken is a duplicate when
# all of these are the same, and a conflict naming the first that differs when not (Mojaloop: same id,
# other content; TigerBeetle names the field); the tap taken first stays. Fields a tap may carry beyond
# these are not stored, and so not compared.
_TAP_CONTENT = (
    ("amount_fen", "bigint"),
    ("balance_before_fen", "bigint"),
    ("balance_after_fen", "bigint"),
    ("tapped_at", "timestamptz"),
    ("tac", "varchar"),
    ("terminal_no", "varchar"),
    ("algorithm", "smallint"),
    ("status", "varchar"),
    ("service", "varchar"),
    ("route", "varchar"),
    ("card_scheme", "varchar"),
    ("fare_rule_id", "varchar"),
    ("categories", "varchar[]"),
    ("passes", "varchar[]"),
)
_content = operator.attrgetter(*(name for name, _ in _TAP_CONTENT))  # a Tap's content, as the stored row's


def _difference(first: tuple, other: tuple) -> str | None:
    """The first field of _TAP_CONTENT in which two contents differ (times as instants), or None."""
    if first == other:
        return None
    return next(name for (name, _), a, b in zip(_TAP_CONTENT, first, other, strict=True) if a != b)


def _stored_value(content: tuple, field: str) -> Any:
    return content[[name for name, _ in _TAP_CONTENT].index(field)]


def _conflict(index: int, raw: Any, tap: Tap, field: str, kept: Any, where: str) -> tuple[int, Any, _Reject]:
    """A conflicting tap as the exceptions table keeps it: what it sent, and what differs from the tap
    taken under its key (``where``: stored, or earlier in this batch)."""

    def shown(value: Any) -> str:
        return value.isoformat() if isinstance(value, dt.datetime) else json.dumps(value, ensure_ascii=False)

    sent = raw if type(raw) is dict else _sent(tap)
    message = (
        f"{field} {shown(getattr(tap, field))} differs from {shown(kept)} of the tap {where} under its key"
    )
    return index, sent, _Reject("conflict", message)


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


# --- SQL ---------------------------------------------------------------------------------------------

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
# or a stored tap's natural key and content (_TAP_CONTENT) to tell a resend from a conflict.
_CLAIM_SQL = f"""
SELECT t.last_seq, array(SELECT nextval('terminals_transaction_id_seq') FROM generate_series(1, %s)),
       NULL::varchar, NULL::bigint, {", ".join(f"NULL::{kind}" for _, kind in _TAP_CONTENT)}
  FROM terminals_terminal t WHERE t.id = %s"""
_STORED_SQL = f"""
SELECT x.terminal_seq, NULL::bigint[], x.card_no, x.card_counter, {", ".join(f"x.{name}" for name, _ in _TAP_CONTENT)}
  FROM terminals_transaction x WHERE x.terminal_id = %s AND x.terminal_seq = ANY(%s::bigint[])"""
_STATEMENTS = {  # prepared per connection and schema: see _statement
    "ingest_lookup": _LOOKUP_SQL,
    "ingest_lock": _LOCK_SQL,
    "ingest_claim": _CLAIM_SQL,
    "ingest_claim_stored": _CLAIM_SQL + "\nUNION ALL" + _STORED_SQL,
    "ingest_stored": _STORED_SQL,
    "ingest_batch": _BATCH_SQL,
    "ingest_mark": "UPDATE terminals_terminal SET last_seq = GREATEST(COALESCE(last_seq, %s), %s) WHERE id = %s",
}
_TX_COLUMNS = (  # each tap's own values first, then the batch's, then the texts that repeat from tap to tap
    "id, tapped_at, idx, terminal_seq, card_no, issuer, card_counter, amount_fen, balance_before_fen,"
    " balance_after_fen, tac, terminal_no, algorithm, card_trip, received_at, batch_id, terminal_id, kind,"
    " rule_version,"
    " hotlist_version, acquirer, service, route, status, card_scheme, categories, passes, fare_rule_id, routing,"
    " issuer_tenant, network, outbox_state"
)
_COPY_SQL = f"COPY terminals_transaction ({_TX_COLUMNS}) FROM STDIN"
_EXCEPTIONS_SQL = """
INSERT INTO terminals_tapexception (kind, reason, message, batch_id, idx, transaction_id, tapped_at, card_no,
    issuer, raw, created_at, resolved_by)
SELECT e.kind, e.reason, e.message, %s, e.idx, e.tx, e.at, e.card, e.issuer, e.raw::jsonb, %s, ''
FROM unnest(%s::text[], %s::text[], %s::text[], %s::int[], %s::bigint[], %s::timestamptz[], %s::text[],
    %s::text[], %s::text[]) AS e(kind, reason, message, idx, tx, at, card, issuer, raw)
"""

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


def _copy(lines: list[str]) -> None:
    """The new taps into their month partitions: one COPY through the partitioned table."""
    with connection.cursor() as cur:
        data = "".join(lines).encode()
        cur.cursor.copy_expert(_COPY_SQL, io.BytesIO(data), size=len(data))  # one read, one CopyData


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def ack_canonical(
    *,
    batch_id: str,
    terminal_id: str,
    received_at: dt.datetime | str,
    raw_taps: list,
    outcomes: list[tuple[str, str]],
    counts: dict[str, int],
) -> bytes:
    """The acknowledgement payload in its canonical form: exactly ``canonical_bytes`` of

        {"batch_id", "terminal_id", "received_at", "accepted", "duplicates", "rejected", "conflicts"?,
         "results": [{"index", "card_no", "card_counter", "terminal_seq", "outcome", "reason"?}, …]}

    (sorted keys, no spaces), but written directly: a result whose card number is plain digits and whose
    counters are integers (every accepted or duplicate tap) is one f-string; anything else goes through
    ``canonical_bytes``. tests/tenants/terminals/test_ack_canonical.py proves the two byte-identical.
    ``conflicts`` is there only when a tap conflicts (``counts["conflict"]``), as a result's ``reason``
    only when there is one: the acknowledgements of every other batch, and their resends, are the bytes
    they were before conflicts were told apart."""
    received_text = received_at if isinstance(received_at, str) else received_at.isoformat()
    middles: dict[tuple[str, str], str] = {}
    parts = []
    for index, (outcome, reason) in enumerate(outcomes):
        raw = raw_taps[index]
        if type(raw) is dict:
            card, counter, seq = raw.get("card_no"), raw.get("card_counter"), raw.get("terminal_seq")
        elif type(raw) is Tap:  # a checked tap of the common form
            card, counter, seq = raw.card_no, raw.card_counter, raw.terminal_seq
        else:
            card = counter = seq = None
        middle = middles.get((outcome, reason))
        if middle is None:
            middle = f',"outcome":{_json_text(outcome)}' + (
                f',"reason":{_json_text(reason)}' if reason else ""
            )
            middles[(outcome, reason)] = middle
        if (
            type(card) is str
            and card.isdigit()
            and card.isascii()
            and type(counter) is int
            and type(seq) is int
        ):
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
    conflicts = counts.get("conflict")
    text = (
        f'{{"accepted":{counts["accepted"]},"batch_id":{_json_text(batch_id)},'
        + (f'"conflicts":{conflicts},' if conflicts else "")
        + f'"duplicates":{counts["duplicate"]},"received_at":{_json_text(received_text)},'
        f'"rejected":{counts["rejected"]},"results":[{",".join(parts)}],'
        f'"terminal_id":{_json_text(terminal_id)}}}'
    )
    return text.encode()


def ack_parts(*, received_at: dt.datetime, signature: str, outcomes: list[tuple[str, str]]) -> str:
    """What is stored of an acknowledgement (``Batch.ack_parts``): the received time as written in it, the
    signature object's JSON text, and the outcomes other than ``accepted`` as [index, outcome, reason]."""
    others = [[i, outcome, reason] for i, (outcome, reason) in enumerate(outcomes) if outcome != "accepted"]
    return json.dumps(
        {"received_at": received_at.isoformat(), "signature": signature, "outcomes": others},
        ensure_ascii=False,
        separators=(",", ":"),
    )


def ack_rebuild(
    *, parts: str, batch_id: str, terminal_id: str, raw_taps: list, counts: dict[str, int]
) -> bytes:
    """The acknowledgement a batch got, byte for byte, from ``Batch.ack_parts`` and the batch's taps (a
    resend carries the same content: its SHA-256 matched). Ed25519 signatures are deterministic and the
    payload's canonical form is a function of its content, so the stored signature is the one sent.
    ``counts`` are the batch row's; its conflicts, which the row does not count, are added from the parts."""
    stored = json.loads(parts)
    outcomes = [("accepted", "")] * len(raw_taps)
    for index, outcome, reason in stored["outcomes"]:
        outcomes[index] = (outcome, reason)
    counts["conflict"] = sum(1 for outcome, _ in outcomes if outcome == "conflict")
    canonical = ack_canonical(
        batch_id=batch_id,
        terminal_id=terminal_id,
        received_at=stored["received_at"],
        raw_taps=raw_taps,
        outcomes=outcomes,
        counts=counts,
    )
    return signed_body(canonical, stored["signature"])


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


# --- the service ---------------------------------------------------------------------------------------


def batch_ingest(*, tenant: Tenant, body: bytes, received_at: dt.datetime | None = None) -> IngestResult:
    """Take one signed batch uploaded to ``tenant``'s domain; return the signed acknowledgement.

    Raises BatchRefused (nothing written) for a malformed, oversized, unsigned or wrongly signed batch,
    an unknown or suspended terminal, a batch for another tenant, or a batch id reused with other content.
    """
    received_at = received_at or timezone.now()
    _check_body(body)
    window = tap_window(received_at)
    common = common_decode(body, window)
    if common is not None:
        try:
            return _ingest_document(
                tenant, common.document, received_at, window, canonical=common.canonical, checked=True
            )
        except _NotCommon:
            pass  # signed in another form of the same content: the general path decides
    document, canonical = _read(body)
    return _ingest_document(tenant, document, received_at, window, canonical=canonical, checked=False)


def _ingest_document(
    tenant: Tenant,
    document: dict[str, Any],
    received_at: dt.datetime,
    window: TapWindow,
    *,
    canonical: bytes,
    checked: bool,
) -> IngestResult:
    """batch_ingest from the decoded document and its payload's canonical bytes; ``checked``: it is the
    common form, its transactions are Taps that passed already."""
    terminal = _verify(document, received_at, tenant, canonical, common=checked)
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
        return _resend(terminal.stored, batch_id, sha, terminal.terminal_id, tenant, raw_taps)
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
            window=window,
            checked=checked,
        )
    except IntegrityError:
        # Another upload of the same batch id committed first: answer as for a resend.
        existing = _existing(batch_id, sha, terminal.terminal_id, tenant, raw_taps)
        if existing is None:
            raise
        return existing


def _existing(
    batch_id: str, sha: str, terminal_id: str, tenant: Tenant, raw_taps: list
) -> IngestResult | None:
    row = (
        Batch.objects.filter(batch_id=batch_id)
        .values_list("sha256", "ack_parts", "accepted", "duplicates", "rejected", "terminal__terminal_id")
        .first()
    )
    if row is None:
        return None
    return _resend(row, batch_id, sha, terminal_id, tenant, raw_taps)


def _resend(
    row: tuple, batch_id: str, sha: str, terminal_id: str, tenant: Tenant, raw_taps: list
) -> IngestResult:
    """A batch id already stored: the same content gets the same acknowledgement, other content 409."""
    if row[0] == sha and row[5] == terminal_id:
        counts = {"accepted": row[2], "duplicate": row[3], "rejected": row[4]}
        body = ack_rebuild(
            parts=row[1], batch_id=batch_id, terminal_id=terminal_id, raw_taps=raw_taps, counts=counts
        )
        return IngestResult(body, True, row[2], row[3], row[4], counts["conflict"], terminal_id)
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
    window: TapWindow,
    checked: bool,
) -> IngestResult:
    skew = max(min(int((created_at - received_at).total_seconds()), 2**31 - 1), -(2**31))
    batch_pk = terminal.batch_pk
    acquirer = tenant.clearing_tenant
    # Roaming taps reach the interop outbox in this transaction when the checks run inline; otherwise the
    # verification stage hands them over, many batches in one envelope.
    inline = verify_inline()
    sink = checks_module.ROAMING_SINK if inline else None
    roaming_state = "sent" if sink is not None else "pending"

    outcomes: list[tuple[str, str]] = [("", "")] * len(raw_taps)  # (outcome, reason) per index
    valid: list[Tap] = []
    seen: dict[tuple[str, int, int], Tap] = {}
    all_seqs: list[int] = []
    routes: dict[tuple[str, str], Any] = {}  # (issuer, Beijing date) -> Route
    months: set[tuple[int, int]] = set()
    rejected: list[tuple[int, Any, _Reject]] = []  # rejected and conflicting taps, for the exceptions table
    terminal_id = terminal.terminal_id
    naturals: list[tuple[str, int, int]] = []  # (card_no, card_counter, terminal_seq) of each valid tap
    latest_text, latest_other = "", window.oldest  # the latest stamp in Beijing form, in any other form
    for index, raw in enumerate(raw_taps):
        try:
            tap = raw if checked else _validate(raw, window)
        except _Reject as exc:
            # Nothing of a rejected tap is taken: not its sequence number for the terminal's high-water mark
            # or its gaps (it may be anything, 2**63 or 2**62 as well as the next one).
            outcomes[index] = ("rejected", exc.reason)
            rejected.append((index, raw, exc))
            continue
        all_seqs.append(tap.terminal_seq)
        natural = (tap.card_no, tap.card_counter, tap.terminal_seq)
        first = seen.get(natural)
        if first is not None:
            field = _difference(_content(first), _content(tap))
            if field is None:
                outcomes[index] = ("duplicate", "repeated in this batch")
            else:
                outcomes[index] = ("conflict", f"repeated in this batch with other {field}")
                rejected.append(
                    _conflict(index, raw, tap, field, getattr(first, field), "earlier in this batch")
                )
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
            route_key = (tap.issuer, _local_day(tap))
        route = routes.get(route_key)
        if route is None:
            day = dt.date.fromisoformat(route_key[1])
            route = routes[route_key] = route_for(acquirer=acquirer, issuer=tap.issuer, on=day)
            months.add((day.year, day.month))  # every day of the batch has a route: every month is here
        tap.routing, tap.issuer_tenant, tap.network = route.routing, route.issuer_tenant, route.network
        tap.terminal_id, tap.batch_pk = terminal_id, batch_pk
        valid.append(tap)
        naturals.append(natural)
    latest_tap = latest_other
    if latest_text and dt.datetime.fromisoformat(latest_text) > latest_tap:
        latest_tap = dt.datetime.fromisoformat(latest_text)

    new: list[Tap] = []
    mark = terminal.last_seq
    if valid:
        partitions_ensure(months)
        mark, ids, stored = _claim(terminal=terminal, seqs=[n[2] for n in naturals])
        # What taps share, in _TX_COLUMNS order: the batch's columns, then a tap's texts and route, which
        # repeat from tap to tap (a terminal's service and route, the issuer's routing).
        shared = (
            f"\t{received_at.isoformat()}\t{batch_pk}\t{_copy_text(terminal_id)}\tpurchase\t{rule_version}"
            f"\t{hotlist_version}\t{_copy_text(acquirer.code)}\t"
        )
        profiles: dict[tuple, str] = {}
        lines = []
        for tap, natural, tx_id in zip(valid, naturals, ids, strict=True):
            kept = stored.get(natural) if stored else None
            if kept is not None:
                field = _difference(kept, _content(tap))
                if field is None:
                    outcomes[tap.index] = ("duplicate", "already received")
                else:
                    outcomes[tap.index] = ("conflict", f"already received with other {field}")
                    raw = raw_taps[tap.index]
                    rejected.append(
                        _conflict(tap.index, raw, tap, field, _stored_value(kept, field), "stored")
                    )
                continue
            tap.tx_id = tx_id
            outcomes[tap.index] = ("accepted", "")
            new.append(tap)
            categories, passes = tap.categories, tap.passes
            profile_key = (
                tap.service,
                tap.route,
                tap.status,
                tap.card_scheme,
                tap.fare_rule_id,
                tap.routing,
                tap.issuer_tenant,
                tap.network,
                tuple(categories) if categories else None,
                tuple(passes) if passes else None,
            )
            profile = profiles.get(profile_key)
            if profile is None:
                outbox = roaming_state if tap.routing == "roaming" else ""
                profile = profiles[profile_key] = (
                    f"{_copy_text(tap.service)}\t{_copy_text(tap.route)}\t{_copy_text(tap.status)}"
                    f"\t{_copy_text(tap.card_scheme)}\t{_copy_codes(categories)}\t{_copy_codes(passes)}"
                    f"\t{_copy_text(tap.fare_rule_id)}\t{tap.routing}\t{_copy_text(tap.issuer_tenant)}"
                    f"\t{_copy_text(tap.network)}\t{outbox}\n"
                )
            lines.append(
                f"{tx_id}\t{tap.tapped_at_text}\t{tap.index}\t{tap.terminal_seq}\t{natural[0]}\t{tap.issuer}"
                f"\t{tap.card_counter}\t{tap.amount_fen}\t{tap.balance_before_fen}\t{tap.balance_after_fen}"
                f"\t{tap.tac}\t{tap.terminal_no}\t{tap.algorithm}\t{tap.card_trip}{shared}{profile}"
            )
        if lines:
            _copy(lines)

    ctx = BatchContext(
        tenant=tenant,
        acquirer=acquirer,
        terminal_pk=terminal.pk,
        terminal_id=terminal_id,
        terminal_last_seq=mark,
        batch_pk=batch_pk,
        batch_id=batch_id,
        received_at=received_at,
        terminal_clock=created_at,
        rule_version=rule_version,
        hotlist_version=hotlist_version,
        all_terminal_seqs=tuple(all_seqs),
        card_tac_key=terminal.card_tac_key,
        latest_tap=latest_tap,
    )
    flags: list[Flag] = []
    for check in checks_module.BATCH_CHECKS:
        flags.extend(check(ctx, new))
    verified = inline or not new  # a batch with no new tap has nothing left to verify
    if inline:
        stored = StoredContext(tenant=tenant, acquirer=acquirer, card_tac_key=terminal.card_tac_key)
        flags.extend(taps_verify(ctx=stored, taps=new))
    counts = {"accepted": 0, "duplicate": 0, "rejected": 0, "conflict": 0}
    by_reason: dict[str, int] = {}
    for outcome, reason in outcomes:
        counts[outcome] += 1
        if outcome == "rejected":
            by_reason[reason] = by_reason.get(reason, 0) + 1
    if counts["conflict"]:
        log.warning(
            "batch %s from %s: %d taps conflict with taps of the same natural key (exceptions, reason conflict)",
            batch_id,
            terminal_id,
            counts["conflict"],
        )
    canonical = ack_canonical(
        batch_id=batch_id,
        terminal_id=terminal_id,
        received_at=received_at,
        raw_taps=raw_taps,
        outcomes=outcomes,
        counts=counts,
    )
    signature = json.dumps(tenant_signature(tenant=tenant, signed=canonical, key=terminal.signing_key))
    body = signed_body(canonical, signature)
    if sink is not None:
        _hand_off_roaming(ctx, new, sink, terminal.signing_key)

    # The last writes in one round trip: the batch with its acknowledgement (a concurrent upload of the
    # same batch id that committed first makes this fail on the unique index: IntegrityError, answered
    # as a resend), flags, exceptions, the terminal's high-water mark.
    statements: list[str] = ["ingest_batch"]  # a name in _STATEMENTS, or the SQL itself
    params: list[Any] = [
        batch_pk,
        batch_id,
        terminal.pk,
        sha,
        created_at,
        received_at,
        skew,
        rule_version,
        hotlist_version,
        len(raw_taps),
        counts["accepted"],
        counts["duplicate"],
        counts["rejected"],
        ack_parts(received_at=received_at, signature=signature, outcomes=outcomes),
        min(t.tx_id for t in new) if new else None,
        max(t.tx_id for t in new) if new else None,
        received_at if verified else None,
    ]
    if flags:
        sql, args = flags_sql(flags=flags, at=received_at)
        statements.append(sql)
        params += args
    exceptions = _exception_params(batch_pk, received_at, new, rejected, routes)
    if exceptions:
        statements.append(_EXCEPTIONS_SQL)
        params += exceptions
    top = max(all_seqs) if all_seqs else None
    if top is not None and (mark is None or top > mark):
        statements.append("ingest_mark")
        params += [top, top, terminal.pk]
    with connection.cursor() as cur:
        cur.execute(";\n".join(_statement(cur, s) if s in _STATEMENTS else s for s in statements), params)
    return IngestResult(
        body,
        False,
        counts["accepted"],
        counts["duplicate"],
        counts["rejected"],
        counts["conflict"],
        terminal_id,
        by_reason,
    )


def _claim(
    *, terminal: _Signer, seqs: list[int]
) -> tuple[int | None, list[int], dict[tuple[str, int, int], tuple]]:
    """Under the terminal's row lock: its high-water mark, an id for each of ``seqs`` (the batch's valid
    taps, in order) and the natural keys (card, counter, sequence) already stored among those taps whose
    sequence number is not above the mark, each with its stored content (_TAP_CONTENT). One round trip;
    a second only when another upload from the same terminal committed between the lookup and the lock
    and raised the mark."""
    known = terminal.last_seq  # as the lookup read it, before the lock
    below = seqs if known is None else [s for s in seqs if s <= known]
    params = [terminal.pk, len(seqs), terminal.pk]
    with connection.cursor() as cur:
        if below:
            claim = _statement(cur, "ingest_claim_stored")
            params += [terminal.terminal_id, pg_array(below)]
        else:
            claim = _statement(cur, "ingest_claim")
        cur.execute(_statement(cur, "ingest_lock") + ";\n" + claim, params)
        rows = cur.fetchall()
        mark, ids = next((row[0], row[1]) for row in rows if row[1] is not None)
        stored = {
            (card, counter, seq): tuple(content)
            for seq, head, card, counter, *content in rows
            if head is None
        }
        if known is not None and mark != known:
            more = [s for s in seqs if s > known and (mark is None or s <= mark)]
            if more:
                cur.execute(
                    _statement(cur, "ingest_stored"),
                    [terminal.terminal_id, pg_array(more)],
                )
                stored.update(
                    ((card, counter, seq), tuple(content))
                    for seq, _, card, counter, *content in cur.fetchall()
                )
    return mark, ids, stored


def _local_day(tap: Tap) -> str:
    """The tap's Beijing date, YYYY-MM-DD: read off its text when that is already in +08:00."""
    text = tap.tapped_at_text
    if text[19:] == "+08:00":
        return text[:10]
    return tap.tapped_at.astimezone(_CST).date().isoformat()


def _exception_params(
    batch_pk: int, at: dt.datetime, new: list[Tap], rejected: list, routes: dict
) -> list[Any]:
    """The parameters of _EXCEPTIONS_SQL for the held and the rejected taps; [] when there are none."""
    entries = []
    for tap in new:
        if tap.routing == "held":
            route = routes[(tap.issuer, _local_day(tap))]
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


def _hand_off_roaming(
    ctx: BatchContext, new: list[Tap], sink: checks_module.RoamingSink, signing_key
) -> None:
    """The roaming taps, stored already as ``outbox_state = 'sent'``, into the interop outbox."""
    roaming = [t for t in new if t.routing == "roaming"]
    if not roaming:
        return
    records = [
        clearing_record(
            ctx_acquirer=ctx.acquirer.code, batch_id=ctx.batch_id, terminal_id=ctx.terminal_id, tap=t
        )
        for t in roaming
    ]
    sink(records, f"terminal:{ctx.terminal_id}", signing_key=signing_key)
