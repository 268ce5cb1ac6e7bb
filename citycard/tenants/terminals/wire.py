"""An upload's JSON on the wire: the body read strictly, and the canonical bytes its signature covers.

What the reader takes, the way every later step sees it (docs/ingestion.md, "Reading the body"):

* UTF-8 text, one JSON value, no NaN or Infinity, no number with a fraction or exponent (money is integer
  fen), integers of at most ``MAX_INT_DIGITS`` digits (any range a field needs is checked by the field),
  containers nested at most ``MAX_DEPTH`` deep (a batch needs 5), no lone UTF-16 surrogate escape
  (``"\\ud800"`` names no character and could not be stored), no object that repeats a key (parsers
  differ on which one wins; the signature must cover the one thing every reader sees).

Anything else raises ``Unreadable`` with a message of its own. orjson reads the usual body (a fifth of
the standard library's time on a 500-tap batch); what it refuses or reads differently (lone surrogates,
integers beyond 64 bits, which it reads as floats, nesting beyond 1024) goes through the standard library,
which says what is wrong. Repeated keys are told by a length (``repeated_keys_refuse``), so the usual
compact body costs no second reading.
"""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # optional: the standard library gives the same answers, slower
    orjson = None

MAX_DEPTH = 32  # containers within containers; a batch has 5 (document, payload, taps, a tap, its codes)
MAX_INT_DIGITS = 40  # any 128-bit integer; a longer one is no value any field takes

_SCALAR_TYPES = frozenset((str, int, bool, type(None)))
_DEEP = f"the body nests deeper than {MAX_DEPTH} levels (a batch needs 5)"


class Unreadable(Exception):
    """The body is not JSON the upload can read; ``message`` says what is wrong, in one line."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def canonical_bytes(payload: Any) -> bytes:
    """terminal_kit.signing.canonical_json for a float-free value (the reader refuses floats).

    Through orjson when it is installed (about six times faster on a 500-tap batch), whose output for
    such a value is byte for byte the standard library's (tests/tenants/terminals/test_canonical_json.py);
    what orjson refuses (integers beyond 64 bits, nesting deeper than 254) goes the standard way, with
    the standard outcome."""
    if orjson is not None:
        try:
            return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # orjson.JSONEncodeError is a TypeError
            pass
    return canonical_bytes_standard(payload)


def canonical_bytes_standard(payload: Any) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def read_json(body: bytes) -> Any:
    """The JSON value of ``body``, or Unreadable saying why not (see the module docstring). Repeated keys
    are not looked for here: ``repeated_keys_refuse`` does it once the payload's canonical bytes exist."""
    if orjson is not None:
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            pass  # the standard library says what is wrong, or reads what orjson refuses to
        else:
            shape = _shape(document)
            if shape is None:
                return document
            if shape == "deep":
                raise Unreadable(_DEEP)
            # A float, or an integer beyond 64 bits that orjson read as one: the standard way tells them apart.
    return _read_standard(body)


def repeated_keys_refuse(body: bytes, document: dict[str, Any], canonical: bytes) -> None:
    """Unreadable if an object in ``body`` repeats a key. ``document`` is what ``read_json`` gave, an
    object holding ``payload``, and ``canonical`` the payload's canonical bytes.

    A JSON text is never shorter than the minimal encoding of the value it reads as (no whitespace, the
    shortest escape of each character, the shortest integer), and a text that repeats a key is longer:
    it also holds the pairs that a later one replaced. orjson and the standard library write exactly that
    minimal encoding (tests/tenants/terminals/test_wire.py, over every code point), and the canonical bytes
    differ from it only in the order of keys: a body as long as the canonical payload plus the rest of
    the document repeats no key. That is the compact body every terminal sends, decided by a length; any
    other body (whitespace, escapes) is read again the standard way, which looks at every object's keys."""
    rest = {key: value for key, value in document.items() if key != "payload"}
    minimal = len(canonical) + len('"payload":') + len(canonical_bytes(rest)) + (1 if rest else 0)
    if len(body) != minimal:
        _read_standard(body)


def _shape(document: Any) -> str | None:
    """``"float"`` if there is a float in ``document``, ``"deep"`` if it nests deeper than MAX_DEPTH,
    else None. Level by level (no recursion, no per-value bookkeeping of depth); a level whose values are
    all plain scalars, a tap's most of all, is passed over by the set of its value types, built in C."""
    kind = type(document)
    if kind is float:
        return "float"
    if kind is not dict and kind is not list:
        return None
    scalars = _SCALAR_TYPES
    level, depth = [document], 1
    while level:
        if depth > MAX_DEPTH:
            return "deep"
        below: list[Any] = []
        for item in level:
            values = item.values() if type(item) is dict else item
            types = set(map(type, values))
            if types <= scalars:
                continue
            if float in types:
                return "float"
            below.extend([v for v in values if type(v) is dict or type(v) is list])
        level, depth = below, depth + 1
    return None


def _read_standard(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Unreadable(
            f"the body is not UTF-8 text: byte 0x{body[exc.start]:02x} at offset {exc.start} ({exc.reason})"
        ) from None
    try:
        document = json.loads(
            text,
            object_pairs_hook=_object,
            parse_float=_no_float,
            parse_int=_integer,
            parse_constant=_no_constant,
        )
    except RecursionError:
        raise Unreadable(_DEEP) from None
    except json.JSONDecodeError as exc:
        raise Unreadable(f"the body is not valid JSON: {exc}") from None
    if _shape(document) == "deep":
        raise Unreadable(_DEEP)
    try:
        canonical_bytes_standard(document)
    except UnicodeEncodeError as exc:  # only a \udxxx escape can give a string a lone surrogate
        raise Unreadable(
            f"the body holds a lone surrogate escape \\u{ord(exc.object[exc.start]):04x}: half of a UTF-16 pair"
            " is not a character"
        ) from None
    return document


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise Unreadable(f"the body repeats the key {json.dumps(key)} in one object")
            seen.add(key)
    return value


def _no_float(text: str) -> Any:
    raise Unreadable(f"the body is not valid JSON: number {text} is not an integer (money is integer fen)")


def _integer(text: str) -> int:
    digits = len(text) - text.startswith("-")
    if digits > MAX_INT_DIGITS:
        raise Unreadable(
            f"the body holds a number of {digits} digits; integers have at most {MAX_INT_DIGITS}"
        )
    return int(text)


def _no_constant(text: str) -> Any:
    raise Unreadable(f"the body is not valid JSON: {text} is not a JSON value")
