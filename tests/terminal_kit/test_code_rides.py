"""Rides by citizen code at a validator (电子市民码乘车, fare medium 04): the code verified offline with the keys
the terminal synced (its city's, and the visitors' home cities' the entitlement list brings), its nonce spent
in the queue database with the ride in one transaction (shown again, or after a restart: refused), priced for
medium 04 from no journey state, queued as the back office expects beside the chip taps (no PSAM serial of
its own, no clash with the next chip tap's), uploaded in the batch; every refusal in the kit's Chinese, and
the same through ``citycard-terminal ride-code``."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from citycard.terminal_kit import i18n
from citycard.terminal_kit.__main__ import main
from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.cardno import card_number_build
from citycard.terminal_kit.ecode import CodeIssuer, EcodeVerifier, ecode_issue
from citycard.terminal_kit.entitlements import EntitlementList, code_issuers_held, list_keep
from citycard.terminal_kit.hotlist import Hotlist
from citycard.terminal_kit.keyring import keyring_take
from citycard.terminal_kit.reader import InProcessReader
from citycard.terminal_kit.signing import b64encode, public_key_bytes
from citycard.terminal_kit.store import TapStore
from citycard.terminal_kit.tap import CODE_MEDIUM, FixedFare, code_ride
from citycard.terminal_kit.transit import TripCodec, card_state
from tests.terminal_kit import kit
from tests.terminal_kit.fare_docs import engine, hangzhou
from tests.terminal_kit.test_cli import CountySite

HANGZHOU = Ed25519PrivateKey.generate()
JIAXING = Ed25519PrivateKey.generate()
HZ_CARD = card_number_build(division="330100", scheme="01", serial=11)
JX_CARD = card_number_build(division="330400", scheme="01", serial=12)


def issuers() -> list[CodeIssuer]:
    return [
        CodeIssuer("hangzhou", frozenset({"330100"}), {"hangzhou:s1": public_key_bytes(HANGZHOU)}),
        CodeIssuer("jiaxing", frozenset({"330400"}), {"jiaxing:s1": public_key_bytes(JIAXING)}),
    ]


def code(card_no=HZ_CARD, *, tenant="hangzhou", key=HANGZHOU, key_id="hangzhou:s1", at=kit.NOW) -> str:
    return ecode_issue(card_no=card_no, tenant=tenant, key=key, key_id=key_id, now=at.timestamp())


def scanning(validator):
    validator.codes = EcodeVerifier(issuers=issuers(), store=validator.store)
    return validator


def code_rides(store: TapStore) -> list[dict]:
    return [t.record for t in store.taps("complete") if t.record["card_scheme"] == CODE_MEDIUM]


def test_code_rides_before_any_chip_tap_carry_serial_0(tmp_path):
    v = scanning(kit.validator(InProcessReader(), tmp_path))
    rides = [v.ride_code(code(card)) for card in (HZ_CARD, HZ_CARD)]
    assert [(r.record["terminal_seq"], r.record["card_counter"]) for r in rides] == [(0, 1), (0, 2)]
    assert v.store.last_terminal_seq() == 0  # a PSAM put in starts from its own serial, not below 0


def test_a_code_ride_is_priced_queued_beside_chip_taps_and_never_taken_twice(tmp_path):
    chip = kit.card(balance=1000)
    v = scanning(kit.validator(InProcessReader(chip), tmp_path, fare=180))
    first = v.tap()
    assert first.outcome == "approved"
    token = code()
    ride = v.ride_code(token)
    assert (ride.outcome, ride.card_no, ride.fare_fen) == ("approved", HZ_CARD, 180)
    record = ride.record
    assert record == code_rides(v.store)[0]
    # what the back office expects of a code ride: medium 04, the code as scanned, no chip, no e-purse
    assert (record["card_scheme"], record["code"], record["issuer"]) == ("04", token, "330100")
    assert (record["balance_before_fen"], record["balance_after_fen"], record["amount_fen"]) == (0, -180, 180)
    assert (record["categories"], record["passes"], record["kind"], record["status"]) == (
        [],
        [],
        "purchase",
        "complete",
    )
    assert record["tac"] == hashlib.sha256(token.encode()).digest()[:4].hex()
    assert record["terminal_no"] == kit.TERMINAL_ID.hex() and record["tapped_at"] == kit.NOW.isoformat()
    # priced from no journey: the back office decodes the same empty state from the record
    assert card_state(TripCodec.for_fare(v.fare), bytes.fromhex(record["card_trip"])) == {}
    # no PSAM serial of its own: the chip tap's it follows; its card counter is the terminal's code-ride count
    assert (record["terminal_seq"], record["card_counter"]) == (first.record["terminal_seq"], 1)

    again = v.ride_code(token)
    assert (again.outcome, again.refusal, again.card_no) == ("declined", "replayed", HZ_CARD)
    assert i18n.translated(again.message, "zh-hans") == "市民码被拒绝（replayed）：此市民码已使用过"
    assert len(code_rides(v.store)) == 1

    # the next chip tap takes the PSAM's next serial, no clash with the code ride
    other = kit.card(serial=2, balance=1000)
    v.transport.insert(other)
    chip_again = v.tap()
    assert chip_again.outcome == "approved"
    assert chip_again.record["terminal_seq"] == first.record["terminal_seq"] + 1
    second = v.ride_code(code(JX_CARD, tenant="jiaxing", key=JIAXING, key_id="jiaxing:s1"))
    assert second.outcome == "approved"
    assert (second.record["terminal_seq"], second.record["card_counter"]) == (
        chip_again.record["terminal_seq"],
        2,
    )

    # all four go up in one batch, in the order taken
    document = v.store.batch_open(
        terminal_id="HZ-BUS-0001",
        tenant="hangzhou",
        key=Ed25519PrivateKey.generate(),
        key_id="HZ-BUS-0001:k1",
        rule_version=0,
        hotlist_version=0,
        now=kit.NOW,
    )
    sent = document["payload"]["transactions"]
    assert [t["card_scheme"] for t in sent] == ["01", "04", "01", "04"]
    assert sent[1]["code"] == token and "code" not in sent[0]

    # the spent code is remembered across a restart of the terminal
    v.store.close()
    restarted = scanning(kit.validator(InProcessReader(chip), tmp_path, fare=180))
    assert restarted.ride_code(token).refusal == "replayed"


@pytest.mark.parametrize(
    ("token", "refusal", "chinese"),
    [
        (lambda: code(at=kit.NOW - dt.timedelta(minutes=10)), "expired", "市民码已过期"),
        (lambda: code(at=kit.NOW + dt.timedelta(minutes=10)), "not_yet_valid", "市民码的时间在未来"),
        (
            lambda: code(key=Ed25519PrivateKey.generate(), key_id="shanghai:s1", tenant="shanghai"),
            "unknown_key",
            "本终端不认识该市民码的发码方",
        ),
        (lambda: code(key=JIAXING), "bad_signature", "市民码的签名不成立"),
        (lambda: code(JX_CARD), "foreign_card", "不是该签发方发行的卡"),
        (lambda: "CC1.not-a-code", "malformed", "不是电子市民码"),
    ],
)
def test_a_code_that_does_not_hold_is_refused_in_chinese_and_nothing_is_queued(
    tmp_path, token, refusal, chinese
):
    v = scanning(kit.validator(InProcessReader(), tmp_path))
    result = v.ride_code(token())
    assert (result.outcome, result.refusal, result.record) == ("declined", refusal, None)
    assert chinese in i18n.translated(result.message, "zh-hans")
    assert refusal in str(result.message)  # the English source keeps the code too
    assert v.store.taps() == []


def test_a_hotlisted_card_and_a_metro_gate_take_no_code(tmp_path):
    v = scanning(kit.validator(InProcessReader(), tmp_path))
    v.hotlist = Hotlist(tenant="hangzhou", version=3, cards=frozenset({HZ_CARD}))
    token = code()
    blocked = v.ride_code(token)
    assert (blocked.outcome, blocked.card_no) == ("blocked", HZ_CARD)
    assert "黑名单" in i18n.translated(blocked.message, "zh-hans")
    v.hotlist = Hotlist()
    v.gate, v.station = "entry", "hz-1-01"
    assert v.ride_code(token).outcome == "declined"
    assert v.store.taps() == []
    v.gate = ""
    assert v.ride_code(token).outcome == "approved"  # the refusals spent nothing


def test_the_issuers_come_from_what_the_terminal_synced(tmp_path):
    """Its city's keys from the keys document (the keys signing its acknowledgements sign its codes too), and
    a visitor's home city's from the offline entitlement list it holds."""
    store = TapStore(tmp_path / "taps.sqlite")
    at = kit.KEYS_NOW
    assert code_issuers_held(store, tenant="tonglu", divisions=["330122"], at=at) == []
    keyring_take(
        kit.keys_document(),
        store=store,
        tenant="tonglu",
        pinned={"public:s1": public_key_bytes(kit.PLATFORM)},
        now=at,
    )
    homes = {
        "jiaxing": {
            "divisions": ["330400"],
            "keys": {"jiaxing:s1": {"public": b64encode(public_key_bytes(JIAXING)), "verify_until": None}},
        }
    }
    list_keep(store, EntitlementList(tenant="tonglu", version=2, code_issuer_keys=homes))
    held = code_issuers_held(store, tenant="tonglu", divisions=["330122"], at=at)
    assert [(i.tenant, sorted(i.divisions), sorted(i.keys)) for i in held] == [
        ("tonglu", ["330122"], ["tonglu:s1"]),  # not hangzhou:s1: it signs the fare rules, not tonglu's codes
        ("jiaxing", ["330400"], ["jiaxing:s1"]),
    ]
    tonglu_card = card_number_build(division="330122", scheme="01", serial=5)
    codes = EcodeVerifier(issuers=held, store=store)
    taken = [
        code_ride(
            token=token,
            codes=codes,
            store=store,
            fare=FixedFare(200),
            tenant="tonglu",
            service="bus",
            route="T1",
            terminal_no="330122000001",
            hotlist=Hotlist(),
            at=at,
        )
        for token in (
            code(tonglu_card, tenant="tonglu", key=kit.TONGLU, key_id="tonglu:s1", at=at),
            code(JX_CARD, tenant="jiaxing", key=JIAXING, key_id="jiaxing:s1", at=at),
            code(tonglu_card, tenant="tonglu", key=kit.HANGZHOU, key_id="hangzhou:s1", at=at),
        )
    ]
    assert [(t.outcome, t.refusal) for t in taken] == [
        ("approved", ""),
        ("approved", ""),
        ("declined", "unknown_key"),
    ]
    assert [r["issuer"] for r in code_rides(store)] == ["330122", "330400"]


def _issuers_file(tmp_path):
    path = tmp_path / "issuers.json"
    path.write_text(
        json.dumps(
            {
                "hangzhou": {
                    "divisions": ["330100"],
                    "keys": {"hangzhou:s1": b64encode(public_key_bytes(HANGZHOU))},
                }
            }
        )
    )
    return str(path)


def test_ride_code_on_the_command_line_speaks_chinese(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("CITYCARD_LANGUAGE", raising=False)
    queue = str(tmp_path / "taps.sqlite")
    token = code(at=dt.datetime.now(dt.UTC))
    argv = ["--fare", "150", "ride-code", "--code", token, "--queue", queue]
    assert main([*argv, "--code-issuers", _issuers_file(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "通过" in out and HZ_CARD in out and "¥1.50" in out and "待上传" in out
    assert main([*argv, "--code-issuers", _issuers_file(tmp_path)]) == 1
    assert "此市民码已使用过" in capsys.readouterr().out
    # no keys synced and none given: nothing to verify with
    assert main(["ride-code", "--code", token, "--queue", str(tmp_path / "other.sqlite")]) == 2
    assert "citycard-terminal sync --entitlements" in capsys.readouterr().err
    (queued,) = code_rides(TapStore(queue))
    assert (queued["code"], queued["amount_fen"], queued["route"]) == (token, 150, "151")


def test_ride_code_in_english(capsys, tmp_path):
    token = code(at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    argv = ["--lang", "en", "ride-code", "--code", token, "--queue", str(tmp_path / "taps.sqlite")]
    assert main([*argv, "--code-issuers", _issuers_file(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "declined" in out and "citizen code refused (expired): the code has expired" in out


def test_sync_brings_the_code_keys_that_ride_code_verifies_with(capsys, tmp_path):
    """`sync --entitlements`: the county's own keys (keys document) and a visitor's home city's (the offline
    entitlement list); `ride-code` then takes both cities' codes with no key given by hand."""
    homes = {
        "jiaxing": {
            "divisions": ["330400"],
            "keys": {"jiaxing:s1": {"public": b64encode(public_key_bytes(JIAXING)), "verify_until": None}},
        }
    }
    site = CountySite(code_issuers=homes)
    key = tmp_path / "terminal.key"
    key.write_text(b64encode(bytes(range(32))))
    queue = str(tmp_path / "taps.sqlite")
    try:
        sync = ["--lang", "en", "--tenant", "tonglu", "sync", "--url", site.url, "--queue", queue]
        assert main([*sync, "--terminal-id", "TL-BUS-0001", "--key", str(key), "--entitlements"]) == 0
        assert (
            "entitlement list version 1: 0 entries; citizen-code keys of jiaxing" in capsys.readouterr().out
        )
    finally:
        site.server.shutdown()
    now = dt.datetime.now(dt.UTC)
    tonglu_card = card_number_build(division="330122", scheme="01", serial=5)
    ride = ["--lang", "en", "--tenant", "tonglu", "ride-code", "--queue", queue, "--divisions", "330122"]
    tokens = [
        code(tonglu_card, tenant="tonglu", key=kit.TONGLU, key_id="tonglu:s1", at=now),
        code(JX_CARD, tenant="jiaxing", key=JIAXING, key_id="jiaxing:s1", at=now),
    ]
    assert [main([*ride, "--code", token]) for token in tokens] == [0, 0]
    out = capsys.readouterr().out
    assert out.count("approved") == 2 and tonglu_card in out and JX_CARD in out
    assert [r["card_no"] for r in code_rides(TapStore(queue))] == [tonglu_card, JX_CARD]


def test_a_code_ride_is_priced_by_the_rule_document_for_medium_04(tmp_path):
    """Hangzhou's rules give every card scheme, medium 04 too, 90 %; the terminal knows no category of the
    code's card (an elderly rider off-peak would ride free by chip), so the code ride pays the medium's
    fare, and its record names the rule."""
    monday_off_peak = dt.datetime(2026, 11, 23, 10, 10, tzinfo=BEIJING)
    v = scanning(kit.validator(InProcessReader(), tmp_path))
    v.fare, v.route, v.clock = engine(hangzhou()), "155", lambda: monday_off_peak
    ride = v.ride_code(code(at=monday_off_peak))
    assert (ride.outcome, ride.fare_fen, ride.record["fare_rule_id"]) == ("approved", 180, "hz-card-91")
    assert card_state(TripCodec.for_fare(v.fare), bytes.fromhex(ride.record["card_trip"])) == {}
