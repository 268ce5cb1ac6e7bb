import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from citycard.terminal_kit.ecode import CodeRefused, EcodeVerifier, ecode_issue
from citycard.terminal_kit.signing import public_key_bytes

NOW = 1_795_000_000


def _tampered(token: str) -> str:
    import base64
    import json

    prefix, payload, signature, key_id = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["card_no"] = "2"
    raw = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return ".".join([prefix, base64.urlsafe_b64encode(raw).rstrip(b"=").decode(), signature, key_id])


@pytest.fixture
def tenant_key():
    return Ed25519PrivateKey.generate()


def verifier(key, clock=NOW):
    return EcodeVerifier(keys={"hangzhou:s1": public_key_bytes(key)}, clock=lambda: clock)


def test_a_fresh_code_verifies_once(tenant_key):
    token = ecode_issue(
        card_no="3301000100000000013", tenant="hangzhou", key=tenant_key, key_id="hangzhou:s1", now=NOW
    )
    v = verifier(tenant_key, NOW + 10)
    assert v.verify(token)["card_no"] == "3301000100000000013"
    with pytest.raises(CodeRefused) as err:
        v.verify(token)
    assert err.value.code == "replayed"


@pytest.mark.parametrize(
    "make, code",
    [
        (
            lambda k: ecode_issue(card_no="1", tenant="t", key=k, key_id="hangzhou:s1", now=NOW - 120),
            "expired",
        ),
        (
            lambda k: ecode_issue(
                card_no="1", tenant="t", key=Ed25519PrivateKey.generate(), key_id="hangzhou:s1", now=NOW
            ),
            "bad_signature",
        ),
        (lambda k: ecode_issue(card_no="1", tenant="t", key=k, key_id="jiaxing:s1", now=NOW), "unknown_key"),
        (
            lambda k: _tampered(ecode_issue(card_no="1", tenant="t", key=k, key_id="hangzhou:s1", now=NOW)),
            "bad_signature",
        ),
        (lambda k: "CC1.bm90.anything.hangzhou:s1", "malformed"),
        (lambda k: "hello", "malformed"),
    ],
)
def test_expired_foreign_and_damaged_codes_are_refused(tenant_key, make, code):
    with pytest.raises(CodeRefused) as err:
        verifier(tenant_key).verify(make(tenant_key))
    assert err.value.code == code
