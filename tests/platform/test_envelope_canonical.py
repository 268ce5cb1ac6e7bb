"""An envelope's body serialised through orjson is byte for byte ``canonical_json``'s: the body's
SHA-256 (idempotency) and the signature are over these bytes. What orjson would write differently or
refuse (floats, str/int subclasses, tuples, integers beyond 64 bits) takes the standard path."""

from __future__ import annotations

import enum
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citycard.platform import envelopes
from citycard.terminal_kit.signing import canonical_json

texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=20) | st.sampled_from(
    ["\x00", "\x1f", "\x7f", "\u2028\u2029", '"\\/', "\ud7ff\ue000\U0010ffff", "é", "中文", "\t\n\r\b\f"]
)
keys = st.text(alphabet=st.characters(codec="utf-8"), max_size=8) | st.sampled_from(
    ["a", "B", "é", "中", "\x01"]
)
ints = st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.integers()
values = st.recursive(
    st.none() | st.booleans() | ints | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=25,
)


@pytest.mark.skipif(
    envelopes.orjson is None, reason="orjson not installed: the standard path is the only one"
)
@settings(max_examples=1000, deadline=None)
@given(body=st.dictionaries(keys, values, max_size=6))
def test_body_bytes_are_the_canonical_bytes(body):
    assert envelopes._body_json(body) == canonical_json(body)


class Kind(enum.StrEnum):
    TAP = "tap"


def test_what_orjson_writes_differently_goes_the_standard_way():
    assert envelopes._body_json({"k": Kind.TAP, "t": (1, 2)}) == canonical_json({"k": Kind.TAP, "t": (1, 2)})
    assert not envelopes._plain({"records": [{"kind": Kind.TAP}]})
    with pytest.raises(TypeError, match="float"):
        envelopes._body_json({"records": [{"amount": 1.5}]})


@settings(max_examples=300, deadline=None)
@given(body=st.dictionaries(keys, values, max_size=6))
def test_stored_documents_read_as_the_standard_library_reads_them(body):
    text = json.dumps(body, ensure_ascii=False)
    assert envelopes.document_loads(text) == json.loads(text)


def test_what_orjson_reads_differently_is_read_the_standard_way():
    # orjson would give a float for an integer beyond 64 bits, and refuses a lone surrogate.
    for text in ('{"a": 123456789012345678901234567890}', '{"a": "\\ud800"}', '{"a": [1.5, 2]}'):
        assert envelopes.document_loads(text) == json.loads(text)
    assert type(envelopes.document_loads('{"a": 123456789012345678901234567890}')["a"]) is int
