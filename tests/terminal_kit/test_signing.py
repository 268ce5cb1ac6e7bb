import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from citycard.terminal_kit.signing import (
    SignatureError,
    canonical_json,
    public_key_bytes,
    reject_floats,
    sign_document,
    verify_document,
)


def test_sign_and_verify_round_trip():
    key = Ed25519PrivateKey.generate()
    doc = sign_document({"b": 1, "a": ["嘉兴", 2]}, key=key, key_id="k1")
    assert verify_document(doc, keys={"k1": public_key_bytes(key)}) == {"b": 1, "a": ["嘉兴", 2]}


def test_canonical_json_is_sorted_compact_utf8_and_refuses_floats():
    assert canonical_json({"b": 1, "a": "市"}) == '{"a":"市","b":1}'.encode()
    with pytest.raises(TypeError):
        canonical_json({"amount": 1.5})


class _Money(float):
    pass


@pytest.mark.parametrize(
    "document",
    [
        1.5,
        {"amount": 1.5},
        [{"card_no": "1", "categories": ["a", 2.0]}],
        {"transactions": [{"passes": [], "nested": {"deep": [[0.1]]}}]},
        ({"x": (1, _Money(2))},),
        {"tail": [1, "a", None, True, float("nan")]},
    ],
)
def test_reject_floats_finds_a_float_at_any_depth(document):
    with pytest.raises(TypeError):
        reject_floats(document)


@pytest.mark.parametrize(
    "document",
    [
        {"transactions": [{"card_no": "3301", "categories": [], "passes": ["m"], "amount_fen": 200}] * 3},
        [None, True, "1.5", 10**30, [], {}, ({"a": [1]},)],
    ],
)
def test_reject_floats_passes_integer_documents(document):
    reject_floats(document)


@pytest.mark.parametrize(
    "mutate, code",
    [
        (lambda d: d["payload"].__setitem__("b", 2), "bad_signature"),
        (lambda d: d.pop("signature"), "unsigned"),
        (lambda d: d["signature"].__setitem__("key_id", "other"), "unknown_key"),
        (lambda d: d["signature"].__setitem__("value", "not base64!"), "malformed"),
        (lambda d: d["signature"].__setitem__("alg", "RS256"), "malformed"),
    ],
)
def test_tampered_documents_are_refused_with_a_reason(mutate, code):
    key = Ed25519PrivateKey.generate()
    doc = sign_document({"b": 1}, key=key, key_id="k1")
    mutate(doc)
    with pytest.raises(SignatureError) as err:
        verify_document(doc, keys={"k1": public_key_bytes(key)})
    assert err.value.code == code
