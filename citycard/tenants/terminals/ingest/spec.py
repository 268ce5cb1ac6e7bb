"""The tap as a terminal sends it (交易记录): one declarative spec of its fields, and the plain reading of it.

``TAP_SPEC`` names every field of a tap in the order it is checked, with its type, bounds and the reason
a tap is rejected for (docs/ingestion.md, "Upload endpoint", shows the same table for people). Everything
else is made from or checked against it:

* ``tap_read`` here: the readable check, a loop over the spec (the general reading, slow but plain);
* ``validate.tap_validate``: the same check unrolled into one straight pass, what the general path runs
  for every tap; tests/tenants/terminals/test_validate_fast.py holds the two equal, reason and message,
  over fuzzed and edge taps;
* ``decode``'s msgspec structs of the common form, generated from the spec (``TapField.common_type``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields
from typing import Any

from citycard.tenants.terminals.checks import Tap
from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.cardno import CARD_NUMBER_LENGTH, luhn_valid
from citycard.terminal_kit.ecode import MAX_TOKEN_CHARS, TOKEN_CHARS

TAPPED_AT_MAX_AGE = dt.timedelta(days=400)  # older than this: refused as implausible
TAPPED_AT_MAX_AHEAD = dt.timedelta(days=31)  # further in the future: refused (nearer ones are flagged)
TAP_STATUSES_PREFIX = "torn"  # "complete", or a torn transaction the terminal resolved ("torn_resolved"…)

INT_MAX = 2**63 - 1  # PostgreSQL bigint: sequence numbers, card counters, amounts and balances
INT4_MAX = 2**31 - 1  # PostgreSQL integer: rule and hotlist versions
HEX = frozenset("0123456789abcdefABCDEF")
ALGORITHMS = (4, 0)  # the card's algorithm ids: SM4, 3DES


class Reject(Exception):
    """A tap refused: ``reason`` (a code, counted in the acknowledgement) and ``message`` (for people)."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        self.message = message


# --- the window of a plausible tapped_at ----------------------------------------------------------


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
    return moment.astimezone(BEIJING).strftime("%Y-%m-%dT%H:%M:%S+08:00")


def tap_window(received_at: dt.datetime) -> TapWindow:
    oldest, newest = received_at - TAPPED_AT_MAX_AGE, received_at + TAPPED_AT_MAX_AHEAD
    low = oldest + dt.timedelta(microseconds=1_000_000 - oldest.microsecond) if oldest.microsecond else oldest
    return TapWindow(oldest, newest, _beijing_text(low), _beijing_text(newest.replace(microsecond=0)))


def is_beijing_form(stamp: str) -> bool:
    """YYYY-MM-DDTHH:MM:SS+08:00, the form terminals send: compared with the window as text."""
    return (
        len(stamp) == 25
        and stamp[19:] == "+08:00"
        and stamp[10] == "T"
        and stamp[4] == stamp[7] == "-"
        and stamp[13] == stamp[16] == ":"
    )


def is_postgres_form(stamp: str) -> bool:
    """YYYY-MM-DDTHH:MM:SS±HH:MM with an offset of the world's (PostgreSQL refuses beyond 15:59, Python
    does not): stored as sent. Any other form is stored as the same instant in UTC."""
    return (
        len(stamp) == 25
        and stamp[10] == "T"
        and stamp[4] == stamp[7] == "-"
        and stamp[13] == stamp[16] == stamp[22] == ":"
        and stamp[19] in "+-"
        and stamp[20:22] <= "14"
    )


# --- the fields ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TapField:
    """One field of a tap. ``read`` gives its value from the tap as sent (``values``: the fields read
    before it) or raises Reject; ``common_type`` is its type in the common form (decode.py), where
    ``None`` in ``optional`` fields means UNSET."""

    name: str
    reason: str = "bad_field"

    @property
    def optional(self) -> bool:
        return False

    def read(self, tap: dict, values: dict[str, Any], window: TapWindow) -> Any:
        raise NotImplementedError

    def common_type(self, meta: Any) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class CardNo(TapField):
    """A card number by the one rule (``terminal_kit.cardno``): 19 ASCII digits ending in their Luhn check
    digit."""

    min_length: int = CARD_NUMBER_LENGTH
    max_length: int = CARD_NUMBER_LENGTH

    def read(self, tap, values, window):
        value = tap.get(self.name)
        if (
            type(value) is not str
            or not self.min_length <= len(value) <= self.max_length
            or not value.isascii()
        ):
            raise Reject(self.reason, f"{self.name} must be {CARD_NUMBER_LENGTH} digits")
        if not luhn_valid(value):
            raise Reject(self.reason, f"{self.name} {value} fails its Luhn check digit")
        return value

    def common_type(self, meta):
        return meta(str, min_length=self.min_length, max_length=self.max_length)


@dataclass(frozen=True)
class PrefixOf(TapField):
    """The first ``length`` characters of another field (the issuer: the card number's first 6 digits)."""

    of: str = ""
    length: int = 6

    def read(self, tap, values, window):
        value, prefix = tap.get(self.name), values[self.of][: self.length]
        if value != prefix:
            raise Reject(self.reason, f"{self.name} {value!r} is not the card number's prefix {prefix}")
        return value

    def common_type(self, meta):
        return str


@dataclass(frozen=True)
class Integer(TapField):
    """An integer within its column's range (``low`` to INT_MAX); ``negative_reason`` for one below 0."""

    low: int = 0
    negative_reason: str = ""

    def read(self, tap, values, window):
        value = tap.get(self.name)
        if type(value) is not int:
            raise Reject(self.reason, f"{self.name} must be an integer")
        if not self.low <= value <= INT_MAX:
            reason = self.negative_reason if self.negative_reason and value < 0 else self.reason
            raise Reject(reason, f"{self.name} {value} is out of range ({self.low} to {INT_MAX})")
        return value

    def common_type(self, meta):
        return meta(int, ge=self.low, le=INT_MAX)


@dataclass(frozen=True)
class Difference(TapField):
    """``minuend − subtrahend = name``, all three read before (the balance after a purchase)."""

    minuend: str = ""
    subtrahend: str = ""

    def read(self, tap, values, window):
        a, b, c = values[self.minuend], values[self.subtrahend], values[self.name]
        if a - b != c:
            raise Reject(self.reason, f"{self.minuend} {a} − {self.subtrahend} {b} ≠ {self.name} {c}")
        return c

    def common_type(self, meta):  # a rule over fields, not a field of its own
        return None


@dataclass(frozen=True)
class Stamp(TapField):
    """ISO 8601 with an offset, within the window; read as (instant, text for the COPY): the text sent
    when PostgreSQL reads it as is, else the instant in UTC. The common form takes the Beijing form only."""

    window_reason: str = "tapped_at_out_of_range"

    def read(self, tap, values, window):
        stamp = tap.get(self.name)
        if type(stamp) is not str:
            raise Reject(self.reason, f"{self.name} must be an ISO 8601 string with an offset")
        try:
            moment = dt.datetime.fromisoformat(stamp)
        except ValueError as exc:
            raise Reject(self.reason, str(exc)) from None
        if moment.tzinfo is None:
            raise Reject(self.reason, f"{self.name} {stamp!r} has no UTC offset")
        if not window.oldest <= moment <= window.newest:
            raise Reject(self.window_reason, f"{self.name} {moment.isoformat()} is implausible")
        if not is_postgres_form(stamp):
            moment = moment.astimezone(dt.UTC)
            stamp = moment.isoformat()
        return moment, stamp

    def common_type(self, meta):
        return meta(str, min_length=25, max_length=25)


@dataclass(frozen=True)
class HexText(TapField):
    """Hex digits, an even number of them, stored lower-case. ``message`` for any fault, else one for
    the length and one for the digits."""

    min_length: int = 0
    max_length: int = 64
    required: bool = True
    message: str = ""

    @property
    def optional(self) -> bool:
        return not self.required

    def read(self, tap, values, window):
        value = tap.get(self.name, None if self.required else "")
        if type(value) is not str or not self.min_length <= len(value) <= self.max_length or len(value) % 2:
            raise Reject(
                self.reason,
                self.message or f"{self.name} must be {self.min_length} to {self.max_length} hex digits",
            )
        if not HEX.issuperset(value):
            raise Reject(self.reason, self.message or f"{self.name} is not hexadecimal")
        return value.lower()

    def common_type(self, meta):
        return meta(str, min_length=self.min_length, max_length=self.max_length)


@dataclass(frozen=True)
class OneOf(TapField):
    """One of ``values`` (of their type exactly: True is not 1)."""

    values: tuple = ()
    message: str = ""

    def read(self, tap, values, window):
        value = tap.get(self.name)
        if type(value) is not type(self.values[0]) or value not in self.values:
            raise Reject(self.reason, self.message.format(value=value))
        return value

    def common_type(self, meta):
        return type(self.values[0])


@dataclass(frozen=True)
class Status(TapField):
    """``complete`` or a torn-resolved variant (starting with ``torn``), at most ``max_length`` characters."""

    max_length: int = 30

    def read(self, tap, values, window):
        value = tap.get(self.name)
        if value != "complete" and (type(value) is not str or not value.startswith(TAP_STATUSES_PREFIX)):
            raise Reject(
                self.reason, f"{self.name} {value!r} is neither 'complete' nor a torn-resolved variant"
            )
        if len(value) > self.max_length:
            raise Reject(self.reason, f"{self.name} is longer than {self.max_length} characters")
        return value

    def common_type(self, meta):
        return meta(str, max_length=self.max_length)


CODE_MAX_LENGTH = 30


def is_code(value: Any) -> bool:
    """A short code: 1 to 30 of [A-Za-z0-9_-] (a fare category, a pass)."""
    return (
        type(value) is str
        and 0 < len(value) <= CODE_MAX_LENGTH
        and value.replace("_", "").replace("-", "").isalnum()
    )


@dataclass(frozen=True)
class Codes(TapField):
    """A list of short codes; absent, null or empty (any falsy value) means none."""

    @property
    def optional(self) -> bool:
        return True

    def read(self, tap, values, window):
        value = tap.get(self.name)
        if not value:
            return []
        if type(value) is not list or not all(is_code(c) for c in value):
            raise Reject(self.reason, f"{self.name} must be a list of short codes")
        return value

    def common_type(self, meta):
        return list[str]


@dataclass(frozen=True)
class Text(TapField):
    """A string of at most ``max_length`` characters: non-empty if ``required`` and not ``may_be_empty``;
    absent or null is "" when not required; an integer is taken as its digits when ``int_as_text``."""

    max_length: int = 0
    required: bool = True
    may_be_empty: bool = False
    int_as_text: bool = False

    @property
    def optional(self) -> bool:
        return not self.required

    def read(self, tap, values, window):
        value = tap.get(self.name)
        if value is None and not self.required:
            return ""
        if type(value) is int and self.int_as_text:
            value = str(value)
        if type(value) is not str or (self.required and not value and not self.may_be_empty):
            raise Reject(self.reason, f"{self.name} must be a non-empty string")
        if len(value) > self.max_length:
            raise Reject(self.reason, f"{self.name} is longer than {self.max_length} characters")
        return value

    def common_type(self, meta):
        return meta(
            str, min_length=0 if self.may_be_empty or not self.required else 1, max_length=self.max_length
        )


@dataclass(frozen=True)
class Token(TapField):
    """A citizen code as the terminal scanned it (电子市民码, ``terminal_kit.ecode``): at most
    ``MAX_TOKEN_CHARS`` of base64url, dots and a key id; absent or null is "". Only its characters are
    checked here: the verification stage checks what it proves (``checks.code_check``)."""

    @property
    def optional(self) -> bool:
        return True

    def read(self, tap, values, window):
        value = tap.get(self.name)
        if value is None:
            return ""
        if type(value) is not str or len(value) > MAX_TOKEN_CHARS or not TOKEN_CHARS.issuperset(value):
            raise Reject(
                self.reason, f"{self.name} must be a citizen code of at most {MAX_TOKEN_CHARS} characters"
            )
        return value

    def common_type(self, meta):
        return meta(str, max_length=MAX_TOKEN_CHARS, pattern="^[A-Za-z0-9_.:-]*$")


# The order is the order of the checks: a tap with several faults is rejected for the first.
TAP_SPEC: tuple[TapField, ...] = (
    CardNo("card_no", reason="bad_card_no"),
    PrefixOf("issuer", reason="issuer_mismatch", of="card_no", length=6),
    Integer("card_counter"),
    Integer("terminal_seq"),
    Integer("amount_fen", negative_reason="negative_amount"),
    Integer("balance_before_fen", low=-INT_MAX),
    Integer("balance_after_fen", low=-INT_MAX),
    Difference(
        "balance_after_fen", reason="balance_mismatch", minuend="balance_before_fen", subtrahend="amount_fen"
    ),
    Stamp("tapped_at", reason="bad_tapped_at"),
    HexText("tac", reason="bad_tac", min_length=8, max_length=64),
    HexText(
        "terminal_no",
        min_length=12,
        max_length=12,
        message="terminal_no must be the SAM's 6-byte terminal number in 12 hex digits",
    ),
    OneOf(
        "algorithm",
        values=ALGORITHMS,
        message="algorithm {value!r} is not a card algorithm id (4 SM4, 0 3DES)",
    ),
    OneOf(
        "kind",
        reason="unsupported_kind",
        values=("purchase",),
        message="kind {value!r} is not taken here (only 'purchase')",
    ),
    Status("status", reason="bad_status", max_length=30),
    Codes("categories"),
    Codes("passes"),
    Text("service", max_length=20),
    Text("route", max_length=255, may_be_empty=True),  # GTFS route ids and names, kept whole
    Text("card_scheme", max_length=40, required=False),
    Text("fare_rule_id", max_length=60, required=False, int_as_text=True),
    HexText(
        "card_trip",
        max_length=256,
        required=False,
        message="card_trip must be the card's transit record in hex, at most 128 bytes",
    ),
    Token("code"),
)
TAP_FIELDS = {f.name: f for f in TAP_SPEC if not isinstance(f, Difference)}  # the fields a tap may carry

_TAP_ATTRIBUTES = {f.name for f in fields(Tap)}
assert set(TAP_FIELDS) <= _TAP_ATTRIBUTES, "every field of the spec is a Tap attribute"


def tap_read(raw: Any, window: TapWindow) -> Tap:
    """One tap of the payload read by the spec, or Reject naming the first fault (the readable
    general path; ``validate.tap_validate`` is the same, unrolled)."""
    if type(raw) is not dict:
        raise Reject("malformed", "a transaction must be a JSON object")
    values: dict[str, Any] = {}
    for spec in TAP_SPEC:
        values[spec.name] = spec.read(raw, values, window)
    tapped_at, tapped_at_text = values.pop("tapped_at")
    return Tap(index=0, **values, tapped_at=tapped_at, tapped_at_text=tapped_at_text)
