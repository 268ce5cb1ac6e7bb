"""The upload on the wire (批量上传): the body read into the signed document, its header, its taps.

Two ways, one answer:

* **the common form** (``common_decode``): terminals built on terminal_kit send every batch with the
  same fields, the same types, Beijing time, compact JSON. msgspec decodes such a body straight into
  typed structs generated from spec.TAP_SPEC (types, ranges and lengths checked in C, a float anywhere
  refused), writes the payload's canonical bytes from them (a body longer than those bytes and the
  signature repeats a key or has whitespace: not the common form) and runs the checks C cannot (Luhn,
  issuer prefix, balance arithmetic, time window, hex digits) over each tap. It answers None whenever the
  body is anything else, and a signature that does not verify over its bytes sends the batch the general
  way too (``NotCommon``): it never decides differently from the general path
  (tests/tenants/terminals/test_common_form.py), it only decides the usual batch in a third of the time.
* **the general path** (``document_read``): terminals.wire.read_json (floats, repeated keys, deep
  nesting, lone surrogates… refused, each with its message), then each tap by ``validate.tap_validate``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields
from typing import Annotated, Any

from django.conf import settings

from citycard.platform.errors import DomainError
from citycard.tenants.terminals.checks import Tap
from citycard.tenants.terminals.ingest.spec import (
    ALGORITHMS,
    HEX,
    INT4_MAX,
    TAP_FIELDS,
    TAP_SPEC,
    TAP_STATUSES_PREFIX,
    Codes,
    HexText,
    Reject,
    Stamp,
    TapWindow,
)
from citycard.tenants.terminals.ingest.validate import LUHN_GOOD, luhn_cached
from citycard.tenants.terminals.wire import Unreadable, canonical_bytes, read_json, repeated_keys_refuse

try:
    import msgspec
except ImportError:  # optional: every batch then takes the general path
    msgspec = None


class BatchRefused(DomainError):
    """The whole upload is refused; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, *, code: str, status: int = 400) -> None:
        super().__init__(message, code=code)
        self.status = status


@dataclass(frozen=True)
class Header:
    """The payload's header, checked."""

    batch_id: str
    created_at: dt.datetime  # in UTC
    rule_version: int
    hotlist_version: int
    taps: list  # as sent (general path) or Taps checked already (common form)


# --- the general path -----------------------------------------------------------------------------------


def body_check(body: bytes) -> None:
    limit = settings.TERMINAL_BATCH_MAX_BYTES
    if len(body) > limit:
        raise BatchRefused(
            f"the batch is {len(body)} bytes; the limit is {limit}", code="too_large", status=413
        )
    if b"\\u0000" in body:
        raise BatchRefused("the batch contains a NUL character", code="malformed")


def document_read(body: bytes) -> tuple[dict[str, Any], bytes]:
    """The signed document of the general path and its payload's canonical bytes (what the signature
    must cover), or BatchRefused for a body that cannot be read (wire.read_json) or is not a signed
    document."""
    body_check(body)
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


def document_load(body: bytes) -> dict[str, Any]:
    """The signed document of the general path (``document_read`` without the canonical bytes)."""
    return document_read(body)[0]


def _parse_time(value: Any, what: str) -> dt.datetime:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be an ISO 8601 string with an offset")
    moment = dt.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError(f"{what} {value!r} has no UTC offset")
    return moment


def header_read(payload: dict[str, Any]) -> Header:
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
        if not 0 <= value <= INT4_MAX:
            raise BatchRefused(f"{name} {value} is out of range (0 to {INT4_MAX})", code="malformed")
    taps = payload.get("transactions")
    if not isinstance(taps, list):
        raise BatchRefused("transactions must be a list", code="malformed")
    limit = settings.TERMINAL_BATCH_MAX_TAPS
    if len(taps) > limit:
        raise BatchRefused(
            f"the batch holds {len(taps)} taps; the limit is {limit}", code="too_large", status=413
        )
    return Header(batch_id, created_at, versions[0], versions[1], taps)


# --- the common form, decoded in C ------------------------------------------------------------------


class NotCommon(Exception):
    """The batch is not in the common form after all: take the general path (nothing is written yet)."""


@dataclass(frozen=True)
class CommonBatch:
    document: dict[str, Any]  # {"payload": {header fields, "transactions": [Tap…]}, "signature": {…}}
    canonical: bytes  # the payload's canonical JSON, if the body is what the terminal signed


if msgspec is not None:
    from msgspec import UNSET, Meta, Struct

    def _meta(kind: type, **bounds: int) -> Any:
        return Annotated[kind, Meta(**bounds)]

    def _tap_struct() -> type:
        """The common form's tap: spec.TAP_SPEC's fields in sorted order (encoding gives the canonical
        bytes of exactly what was sent), optional ones UNSET when absent (and then not written)."""
        members = []
        for spec in sorted((s for s in TAP_SPEC if s.common_type(_meta) is not None), key=lambda s: s.name):
            kind = spec.common_type(_meta)
            members.append(
                (spec.name, kind | msgspec.UnsetType, UNSET) if spec.optional else (spec.name, kind)
            )
        return msgspec.defstruct("TapIn", members, kw_only=True, forbid_unknown_fields=True)

    _TapIn = _tap_struct()

    class _PayloadIn(Struct, forbid_unknown_fields=True):
        batch_id: str
        created_at: str
        hotlist_version: int
        rule_version: int
        tenant: str
        terminal_id: str
        transactions: list[_TapIn]  # type: ignore[valid-type]

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
else:
    UNSET = object()

_CODES = Codes("codes")


def _tap_from_common_source() -> str:
    """The source of ``_tap_from_common(t, tapped_at, categories, passes)``: the Tap of a common-form tap
    ``t`` (checked), each Tap field from the spec field of its name (hex in lower case, an absent optional
    text ""), the others their defaults. Made once, positional in Tap's field order: a third of the cost
    of the keyword call written out, 500 times a batch."""
    values = []
    for tap_field in fields(Tap):
        name, spec = tap_field.name, TAP_FIELDS.get(tap_field.name)
        if name == "index":
            value = "0"  # its place in the batch: set by outcomes.taps_sort
        elif name == "tapped_at_text":
            value = "t.tapped_at"  # as sent: the common form is Beijing time, which PostgreSQL reads
        elif isinstance(spec, Stamp | Codes):
            value = name  # parsed, or checked, by common_decode
        elif isinstance(spec, HexText):
            value = (
                f"t.{name}.lower()" if not spec.optional else f'"" if t.{name} is UNSET else t.{name}.lower()'
            )
        elif spec is not None:
            value = f"t.{name}" if not spec.optional else f'"" if t.{name} is UNSET else t.{name}'
        else:
            value = repr(tap_field.default)  # routing, tx_id…: set later
        values.append(f"{value},  # {name}")
    return "def _tap_from_common(t, tapped_at, categories, passes):\n    return Tap(\n{}\n    )\n".format(
        "\n".join(f"        {v}" for v in values)
    )


_namespace: dict[str, Any] = {"Tap": Tap, "UNSET": UNSET}
exec(_tap_from_common_source(), _namespace)
_tap_from_common = _namespace["_tap_from_common"]


def _common_codes(value: Any) -> list[str] | None:
    """A tap's categories or passes as the spec takes them, or None if it refuses them."""
    if value is UNSET or not value:
        return []
    try:
        return _CODES.read({"codes": value}, {}, None)
    except Reject:
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
    good = LUHN_GOOD
    for t in payload.transactions:
        card_no = t.card_no
        if card_no not in good and not (card_no.isascii() and card_no.isdigit() and luhn_cached(card_no)):
            return None
        amount, before, after = t.amount_fen, t.balance_before_fen, t.balance_after_fen
        stamp, tac, terminal_no, status, card_trip = t.tapped_at, t.tac, t.terminal_no, t.status, t.card_trip
        if (
            t.issuer != card_no[:6]
            or before - amount != after
            or stamp[19:] != "+08:00"  # spec.is_beijing_form (the length is the struct's)
            or stamp < oldest
            or stamp > newest
            or stamp[10] != "T"
            or stamp[4] != "-"
            or stamp[7] != "-"
            or stamp[13] != ":"
            or stamp[16] != ":"
            or len(tac) % 2
            or not HEX.issuperset(tac)
            or not HEX.issuperset(terminal_no)
            or t.algorithm not in ALGORITHMS
            or t.kind != "purchase"
            or (status != "complete" and not status.startswith(TAP_STATUSES_PREFIX))
            or (card_trip is not UNSET and (len(card_trip) % 2 or not HEX.issuperset(card_trip)))
        ):
            return None
        try:
            tapped_at = dt.datetime.fromisoformat(stamp)
        except ValueError:
            return None
        categories, passes = _common_codes(t.categories), _common_codes(t.passes)
        if categories is None or passes is None:
            return None
        append(_tap_from_common(t, tapped_at, categories, passes))
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
