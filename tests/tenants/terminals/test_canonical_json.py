"""The canonical JSON of an uploaded batch through orjson is byte for byte the standard library's.

The signature is over these bytes and the batch's SHA-256 (idempotency) too, so a single differing
byte would refuse good batches or take a resend for new content. Payloads here are what ``json.loads``
gives with floats refused: dicts with string keys, lists, strings (any character, control characters
included), integers of any size, booleans and null.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citycard.tenants.terminals import wire
from citycard.tenants.terminals.wire import canonical_bytes, canonical_bytes_standard

texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=20) | st.sampled_from(
    ["\x00", "\x1f", "\x7f", "\u2028\u2029", '"\\/', "\ud7ff\ue000\U0010ffff", "é", "中文", "\t\n\r\b\f"]
)
keys = st.text(alphabet=st.characters(codec="utf-8"), max_size=8) | st.sampled_from(
    ["a", "B", "é", "中", "\x01"]
)
ints = (
    st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.integers()
    | st.sampled_from([0, -1, 2**63 - 1, -(2**63), 2**64 - 1, 2**64, -(2**63) - 1])
)
values = st.recursive(
    st.none() | st.booleans() | ints | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=25,
)


@pytest.mark.skipif(wire.orjson is None, reason="orjson not installed: the standard path is the only one")
@settings(max_examples=1000, deadline=None)
@given(payload=st.dictionaries(keys, values, max_size=6))
def test_orjson_bytes_are_the_canonical_bytes(payload):
    # through a JSON round trip first, as an uploaded payload arrives
    payload = json.loads(json.dumps(payload))
    assert canonical_bytes(payload) == canonical_bytes_standard(payload)


def test_what_orjson_refuses_goes_the_standard_way():
    for payload in ({"n": 2**64}, {"n": -(2**63) - 1}, {"deep": json.loads("[" * 300 + "]" * 300)}):
        assert canonical_bytes(payload) == canonical_bytes_standard(payload)
    with pytest.raises(UnicodeEncodeError):  # a lone surrogate (a "\ud800" escape): as before
        canonical_bytes(json.loads('{"a": "\\ud800"}'))
