"""Reading an upload's body (``wire.read_json``, ``wire.repeated_keys_refuse``): each body that cannot be
read is refused with a message of its own, and what the length test of repeated keys rests on holds."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citycard.tenants.terminals import wire
from citycard.tenants.terminals.ingest import BatchRefused, common_decode, decode, tap_window
from citycard.tenants.terminals.ingest.decode import document_load
from citycard.tenants.terminals.wire import Unreadable, canonical_bytes, read_json, repeated_keys_refuse

from .test_common_form import HEADER, SIGNATURE
from .test_validate_fast import _GOOD, RECEIVED

DOCUMENT = {"payload": {**HEADER, "transactions": [_GOOD]}, "signature": SIGNATURE}
COMPACT = json.dumps(DOCUMENT, ensure_ascii=False, separators=(",", ":")).encode()


def _refused(body: bytes) -> str:
    with pytest.raises(BatchRefused) as refused:
        document_load(body)
    assert refused.value.code == "malformed", refused.value.message
    return refused.value.message


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"[" * 5000 + b"]" * 5000, "nests deeper than 32 levels"),  # the standard library's RecursionError
        (b"[" * 600 + b"]" * 600, "nests deeper than 32 levels"),  # orjson reads it; the limit is ours
        (b'{"payload": {"a": ' + b"[" * 40 + b"]" * 40 + b"}}", "nests deeper than 32 levels"),
        (b'{"payload": "\\ud800"}', "lone surrogate escape \\ud800"),
        (b'{"payload": {"route": "\\udfff x"}}', "lone surrogate escape \\udfff"),
        (b'{"payload": "\xff"}', "not UTF-8 text: byte 0xff at offset 13"),
        (b'{"payload": "\xed\xa0\x80"}', "not UTF-8 text: byte 0xed"),  # a surrogate encoded raw
        (b"\xef\xbb\xbf{}", "not valid JSON"),  # a byte-order mark
        (b'{"payload": {}, "payload": {}}', 'repeats the key "payload"'),
        (b'{"payload": {"a": 1, "b": {"c": 1, "c": 2}}}', 'repeats the key "c"'),
        (b'{"payload": {"n": 1.5}}', "number 1.5 is not an integer"),
        (b'{"payload": {"n": 1e2}}', "number 1e2 is not an integer"),
        (b'{"payload": {"n": 1e400}}', "number 1e400 is not an integer"),
        (b'{"payload": {"n": NaN}}', "NaN is not a JSON value"),
        (b'{"payload": {"n": ' + b"9" * 41 + b"}}", "a number of 41 digits; integers have at most 40"),
        (b'{"payload": {"n": -' + b"9" * 5000 + b"}}", "a number of 5000 digits"),
        (b'{"payload": {', "not valid JSON"),
        (b"", "not valid JSON"),
    ],
)
def test_each_unreadable_body_has_its_own_message(body, says):
    assert says in _refused(body)


def test_integers_are_read_whole_whatever_their_size():
    """orjson reads an integer beyond 64 bits as a float; the reader reads it as the integer it is."""
    for n in (2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63) - 1, 10**39, -(10**39)):
        assert read_json(json.dumps({"n": n}).encode()) == {"n": n}


@pytest.mark.parametrize("layout", ["compact", "spaced", "ascii"])
@pytest.mark.parametrize(
    "repeat",
    [
        lambda b: b.replace(b'{"payload":', b'{"payload":{},"payload":', 1),
        lambda b: b.replace(b'"tenant":', b'"tenant":"x","tenant":', 1),
        lambda b: b.replace(b'"amount_fen":', b'"amount_fen":1,"amount_fen":', 1),
        lambda b: b.replace(b'"key_id":', b'"key_id":"HZ-T-1:k1","key_id":', 1),
        lambda b: b[:-1] + b',"payload":' + b[len(b'{"payload":') : b.index(b',"signature"')] + b"}",
    ],
    ids=["document", "header", "tap", "signature", "the same payload twice"],
)
def test_a_repeated_key_is_refused_in_any_layout_and_never_taken_by_the_common_form(layout, repeat):
    compact = repeat(COMPACT)
    body = {
        "compact": compact,
        "spaced": compact.replace(b'":', b'": ').replace(b',"', b', "'),
        "ascii": compact.replace(b'"hangzhou"', b'"\\u0068angzhou"'),
    }[layout]
    assert common_decode(body, tap_window(RECEIVED)) is None
    assert "repeats the key" in _refused(body)


@pytest.mark.parametrize("layout", ["compact", "spaced", "escaped", "trailing newline"])
def test_a_body_without_repeats_is_read_in_any_layout(layout):
    body = {
        "compact": COMPACT,
        "spaced": json.dumps(DOCUMENT, indent=2).encode(),
        "escaped": json.dumps(DOCUMENT, ensure_ascii=True).encode().replace(b"/", b"\\/"),
        "trailing newline": COMPACT + b"\n",
    }[layout]
    assert document_load(body) == DOCUMENT


def test_the_common_form_takes_the_compact_body_only():
    window = tap_window(RECEIVED)
    assert common_decode(COMPACT, window) is not None
    assert common_decode(COMPACT + b" ", window) is None


@pytest.mark.parametrize("body", [b'{"\x80":1}', b'{"payload":{"a\xff":1}}', b"[" * 100_000])
def test_the_common_form_declines_what_msgspec_fails_on_otherwise(body):
    """msgspec raises UnicodeDecodeError, not its DecodeError, naming an unknown key that is not UTF-8
    (found by tests/e2e/test_upload_fuzz.py: it was a 500)."""
    assert common_decode(body, tap_window(RECEIVED)) is None
    _refused(body)


def test_every_character_is_written_in_its_shortest_form():
    """What repeated_keys_refuse rests on: orjson, msgspec and the standard library write every code point
    in the shortest form JSON allows (raw UTF-8, a two-character escape, \\u00XX for other controls)."""
    encoders = [lambda s: json.dumps(s, ensure_ascii=False).encode()]
    if wire.orjson is not None:
        encoders.append(wire.orjson.dumps)
    if decode.msgspec is not None:
        encoders.append(decode.msgspec.json.encode)
    short = {0x08, 0x09, 0x0A, 0x0C, 0x0D, 0x22, 0x5C}
    text = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000)
    shortest = 2 + sum(2 if ord(c) in short else 6 if ord(c) < 0x20 else len(c.encode()) for c in text)
    for encode in encoders:
        assert len(encode(text)) == shortest


keys = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=4)
values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(payload=st.dictionaries(keys, values, max_size=4), extra=st.dictionaries(keys, values, max_size=2))
def test_a_compact_body_is_as_long_as_its_minimal_encoding(payload, extra):
    """No repeated key: the length test passes a compact body without a second reading, in any key order."""
    document = {**{k: v for k, v in extra.items() if k != "payload"}, "payload": payload}
    body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    read = read_json(body)
    repeated_keys_refuse(body, read, canonical_bytes(read["payload"]))
    assert len(body) == len(canonical_bytes(read))


def test_the_reader_without_orjson_gives_the_same_answers(monkeypatch):
    answers = []
    for installed in (True, False):
        if not installed:
            monkeypatch.setattr(wire, "orjson", None)
        for body in (COMPACT, b'{"payload": {"n": 1.5}}', b'{"a": "\\ud800"}', b"[" * 100 + b"]" * 100):
            try:
                answers.append((installed, read_json(body)))
            except Unreadable as exc:
                answers.append((installed, exc.message))
    assert answers[:4] == [(True, a) for _, a in answers[4:]]
