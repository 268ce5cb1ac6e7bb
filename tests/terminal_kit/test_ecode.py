"""Electronic citizen codes: bound to their signer's tenant and cards, capped lifetimes, every malformed
field refused with a reason, and a replay memory that survives a restart of the terminal."""

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from citycard.terminal_kit.cardno import card_number_build
from citycard.terminal_kit.ecode import PREFIX, CodeIssuer, CodeRefused, EcodeVerifier, ecode_issue
from citycard.terminal_kit.signing import public_key_bytes
from citycard.terminal_kit.store import TapStore

NOW = 1_795_000_000
HZ_CARD = card_number_build(division="330100", scheme="01", serial=1)
JX_CARD = card_number_build(division="330400", scheme="01", serial=7)
HANGZHOU = Ed25519PrivateKey.generate()
JIAXING = Ed25519PrivateKey.generate()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def signed(payload, *, key=HANGZHOU, key_id="hangzhou:s1", raw=None) -> str:
    """A code over any payload (well-formed or not), signed for real."""
    raw = raw if raw is not None else json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return ".".join([PREFIX, _b64(raw), _b64(key.sign(raw)), key_id])


def good(**changes):
    payload = {"card_no": HZ_CARD, "tenant": "hangzhou", "iat": NOW, "exp": NOW + 60, "nonce": "a1" * 8}
    payload.update(changes)
    return {k: v for k, v in payload.items() if v is not ...}


@pytest.fixture
def store(tmp_path):
    s = TapStore(tmp_path / "taps.sqlite")
    yield s
    s.close()


def verifier(store, clock=NOW + 10):
    issuers = [
        CodeIssuer("hangzhou", frozenset({"330100"}), {"hangzhou:s1": public_key_bytes(HANGZHOU)}),
        CodeIssuer(
            "jiaxing", frozenset({"330400"}), {"jiaxing:s1": public_key_bytes(JIAXING)}, max_lifetime_s=120
        ),
    ]
    return EcodeVerifier(issuers=issuers, store=store, clock=lambda: clock)


def refusal(store, token, clock=NOW + 10) -> CodeRefused:
    with pytest.raises(CodeRefused) as err:
        verifier(store, clock).verify(token)
    return err.value


def test_a_fresh_code_verifies_once(store):
    token = ecode_issue(card_no=HZ_CARD, tenant="hangzhou", key=HANGZHOU, key_id="hangzhou:s1", now=NOW)
    assert verifier(store).verify(token)["card_no"] == HZ_CARD
    assert refusal(store, token).code == "replayed"


def test_a_replay_is_refused_after_the_terminal_restarts(tmp_path):
    token = ecode_issue(card_no=JX_CARD, tenant="jiaxing", key=JIAXING, key_id="jiaxing:s1", now=NOW)
    first = TapStore(tmp_path / "taps.sqlite")
    assert verifier(first).verify(token)["tenant"] == "jiaxing"
    first.close()
    again = TapStore(tmp_path / "taps.sqlite")
    assert refusal(again, token).code == "replayed"
    again.close()


def test_the_replay_memory_forgets_codes_once_they_expired(store):
    for i in range(5):
        nonce = f"{i:016x}"
        assert verifier(store).verify(signed(good(nonce=nonce)))
    later = NOW + 60 + 60
    fresh = signed(good(iat=later - 10, exp=later + 50, nonce="f" * 16))
    assert verifier(store, later).verify(fresh)
    assert store.db.execute("SELECT count(*) FROM code_nonces").fetchone()[0] == 1


def test_a_jiaxing_key_cannot_vouch_for_a_hangzhou_code_or_card(store):
    claims_hangzhou = signed(good(), key=JIAXING, key_id="jiaxing:s1")
    assert refusal(store, claims_hangzhou).code == "foreign_signer"
    hangzhou_card = signed(good(tenant="jiaxing"), key=JIAXING, key_id="jiaxing:s1")
    assert refusal(store, hangzhou_card).code == "foreign_card"
    jiaxing_card_by_hangzhou = signed(good(card_no=JX_CARD))
    assert refusal(store, jiaxing_card_by_hangzhou).code == "foreign_card"


def test_lifetimes_are_capped_by_the_issuers_policy(store):
    ten_years = signed(good(exp=NOW + 10 * 365 * 86400))
    err = refusal(store, ten_years)
    assert err.code == "lifetime_too_long" and "60 s at most" in str(err)
    assert refusal(store, signed(good(exp=NOW + 61))).code == "lifetime_too_long"
    jiaxing_two_minutes = good(card_no=JX_CARD, tenant="jiaxing", exp=NOW + 120)
    assert verifier(store).verify(signed(jiaxing_two_minutes, key=JIAXING, key_id="jiaxing:s1"))


@pytest.mark.parametrize(
    "payload, field",
    [
        (good(iat="1795000000"), "iat"),
        (good(iat=True), "iat"),
        (good(iat=None), "iat"),
        (good(exp=[NOW]), "exp"),
        (good(exp=-1), "exp"),
        (good(exp=NOW), "exp"),  # not after iat
        (good(card_no=HZ_CARD[:-1] + str((int(HZ_CARD[-1]) + 1) % 10)), "card_no"),
        (good(card_no=int(HZ_CARD)), "card_no"),
        (good(tenant=""), "tenant"),
        (good(tenant={"name": "hangzhou"}), "tenant"),
        (good(nonce="short"), "nonce"),
        (good(nonce="A1" * 8), "nonce"),
        (good(nonce=12345678901234567), "nonce"),
        (good(nonce=...), "nonce"),
        (good(card_no=...), "card_no"),
        (good(scope="all"), "scope"),
    ],
)
def test_every_malformed_field_is_refused_with_its_name(store, payload, field):
    err = refusal(store, signed(payload))
    assert (err.code, err.field) == ("bad_field", field), str(err)


@pytest.mark.parametrize(
    "token",
    [
        signed(None, raw=b'{"card_no":"1","iat":1795000000.5}'),  # a float
        signed(None, raw=b'{"iat":NaN}'),
        signed(None, raw=b"[1,2]"),
        signed(None, raw=b"\xff\xfe"),
        signed(None, raw=json.dumps(good()).encode()),  # not canonical (spaces)
        signed(None, raw=b'{"tenant":"hangzhou","tenant":"jiaxing"}'),
        "CC1.bm90.anything.hangzhou:s1",
        "CC1.e30.c2ln+/.hangzhou:s1",  # not base64url
        "CC1." + "A" * 2000 + ".sig.hangzhou:s1",  # longer than any QR code
        "hello",
    ],
)
def test_damaged_codes_are_refused_as_malformed(store, token):
    assert refusal(store, token).code == "malformed"


@pytest.mark.parametrize(
    "make, code",
    [
        (lambda: signed(good(iat=NOW - 120, exp=NOW - 60)), "expired"),
        (lambda: signed(good(iat=NOW + 60, exp=NOW + 120)), "not_yet_valid"),
        (lambda: signed(good(), key=Ed25519PrivateKey.generate()), "bad_signature"),
        (lambda: signed(good(), key_id="shanghai:s1"), "unknown_key"),
    ],
)
def test_expired_future_forged_and_unknown_codes_are_refused(store, make, code):
    assert refusal(store, make()).code == code


def test_a_tampered_payload_does_not_verify(store):
    prefix, _payload, signature, key_id = signed(good()).split(".")
    other = _b64(json.dumps(good(card_no=JX_CARD), sort_keys=True, separators=(",", ":")).encode())
    assert refusal(store, ".".join([prefix, other, signature, key_id])).code == "bad_signature"


def test_one_key_listed_for_two_issuers_is_a_configuration_error(store):
    key = {"shared:s1": public_key_bytes(HANGZHOU)}
    with pytest.raises(ValueError, match="two issuers"):
        EcodeVerifier(
            issuers=[
                CodeIssuer("a", frozenset({"330100"}), key),
                CodeIssuer("b", frozenset({"330400"}), key),
            ],
            store=store,
        )


def test_the_back_office_checks_a_code_at_the_rides_time_without_spending_it():
    """``EcodeVerifier.check``: the same checks at the given time (the ride's), no nonce store (the back
    office claims nonces in bulk); a verifier without a store cannot spend codes."""
    token = ecode_issue(card_no=HZ_CARD, tenant="hangzhou", key=HANGZHOU, key_id="hangzhou:s1", now=NOW)
    office = verifier(None, clock=NOW + 3600)  # checked an hour later, at the ride's time
    assert office.check(token, at=NOW + 30)["card_no"] == HZ_CARD
    assert office.check(token, at=NOW + 30)["card_no"] == HZ_CARD  # nothing spent
    with pytest.raises(CodeRefused) as err:
        office.check(token, at=NOW + 60 + 6)
    assert err.value.code == "expired"
    with pytest.raises(CodeRefused) as err:
        office.check(token, at=NOW - 6)
    assert err.value.code == "not_yet_valid"
    forged = token[:-20] + ("A" if token[-20] != "A" else "B") + token[-19:]
    with pytest.raises(CodeRefused):
        office.check(forged, at=NOW + 30)
    with pytest.raises(ValueError, match="store"):
        office.verify(token)
