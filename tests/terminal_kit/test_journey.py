"""Journey state on the card: the transit record (transfer window, transfer count, caps, quotas) written
in the composite purchase with the debit, atomically, and read by the next validator whatever bus or line
it is on — in-process and through pcscd with two validators."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.card import apdu as A
from citycard.terminal_kit.card.virtual import EMPTY_TRANSIT, CardProfile, VirtualCard
from citycard.terminal_kit.card.vpcd import PSAM_PORT
from citycard.terminal_kit.cardno import card_number_build
from citycard.terminal_kit.fares import load_signed
from citycard.terminal_kit.reader import InProcessReader, PcscReader
from citycard.terminal_kit.sam import Psam
from citycard.terminal_kit.signing import public_key_bytes, sign_document
from citycard.terminal_kit.tap import FixedFare
from citycard.terminal_kit.transit import TransitRecordError, TripCodec
from tests.terminal_kit import kit
from tests.terminal_kit.conftest import PSAM_READER, reinsert
from tests.terminal_kit.fare_docs import hangzhou, jiaxing

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
HZ = load_signed(
    sign_document(hangzhou(version=3), key=KEY, key_id="hangzhou:s1"),
    keys={"hangzhou:s1": public_key_bytes(KEY)},
)
JX = load_signed(
    sign_document(jiaxing(version=2), key=KEY, key_id="jiaxing:s1"),
    keys={"jiaxing:s1": public_key_bytes(KEY)},
)
MORNING = dt.datetime(2026, 11, 24, 8, 30, tzinfo=BEIJING)  # a Tuesday
# A journey begun on bus 151 at 08:30 that transferred once and paid 260 fen, the elderly quota used 3
# times in November 2026, 900 fen spent towards the day cap on 2026-11-24.
STATE = {
    "j": {"t0": 29_924_670, "t": 29_924_710, "n": 1, "p": 260, "s": "bus", "r": "151"},
    "q": {"hz-elderly-free": [24_322, 3]},
    "c": {"hz-day-cap": [739_944, 900]},
}
RECORD = bytes.fromhex(
    "016201"  # record id, length, format
    "7b41"  # owner: SHA-256("hangzhou")[:2]
    "01"
    + "313531".ljust(20, "0")  # bus, route "151"
    + "01c89d3e"  # first tap: 2026-11-24 08:30 +08:00 in Unix minutes
    "0028"  # last tap 40 minutes later
    "01"  # one transfer
    "000104"  # 260 fen paid
    "02"  # two counters
    "02"
    + "12e5"
    + "0b4a68"
    + "000384"  # cap hz-day-cap (SHA-256("hangzhou:hz-day-cap")), day 739944, 900 fen
    "01"
    + "d9a0"
    + "005f02"
    + "000003"  # quota hz-elderly-free, November 2026 (24322), 3 rides
    + "00" * 54
    + "00"
)


def hz_card(serial: int, *, balance: int = 5000, categories=()) -> VirtualCard:
    number = card_number_build(division="330100", scheme="01", serial=serial)
    return VirtualCard(
        CardProfile(card_no=number, categories=frozenset(categories)), kit.keys(), balance=balance
    )


def test_the_transit_record_layout_is_the_documented_one():
    codec = TripCodec.for_fare(HZ)
    assert codec.encode(STATE) == RECORD
    assert codec.decode(RECORD) == STATE
    assert codec.decode(EMPTY_TRANSIT) == {}


def test_another_citys_journey_and_counters_are_kept_but_give_nothing():
    record = TripCodec.for_fare(HZ).encode(STATE)
    in_jiaxing = TripCodec.for_fare(JX).decode(record)
    assert "j" not in in_jiaxing and in_jiaxing["~j"] == record[3:26].hex()
    assert in_jiaxing["q"] == {"~01d9a0": [24_322, 3]} and in_jiaxing["c"] == {"~0212e5": [739_944, 900]}
    # Jiaxing writes its own counters beside Hangzhou's and keeps Hangzhou's as they were.
    back = TripCodec.for_fare(HZ).decode(TripCodec.for_fare(JX).encode(in_jiaxing))
    assert back == STATE


def test_eight_counters_at_most_the_most_recent_periods_kept():
    state = {"c": {f"cap-{i}": [739_900 + i, i] for i in range(12)}}
    codec = TripCodec("hangzhou", caps=[f"cap-{i}" for i in range(12)])
    assert sorted(codec.decode(codec.encode(state))["c"]) == sorted(f"cap-{i}" for i in range(4, 12))


def test_a_damaged_record_is_refused_by_the_codec_and_rewritten_by_the_tap(tmp_path):
    with pytest.raises(TransitRecordError):
        TripCodec.for_fare(HZ).decode(EMPTY_TRANSIT[:2] + b"\x07" + EMPTY_TRANSIT[3:])
    c = hz_card(1)
    c.transit = EMPTY_TRANSIT[:26] + b"\x63" + EMPTY_TRANSIT[27:]  # 99 counters
    v = kit.validator(InProcessReader(c), tmp_path)
    v.fare = HZ
    assert v.tap().outcome == "approved"
    assert TripCodec.for_fare(HZ).decode(c.transit)["j"]["r"] == "151"


def _validator(tmp_path, name: str, *, route: str, service: str = "bus", sam=None, reader=None, clock=None):
    (tmp_path / name).mkdir()
    v = kit.validator(reader or InProcessReader(), tmp_path / name, sam_client=sam)
    v.fare, v.route, v.service = HZ, route, service
    v.clock = clock
    return v


def test_the_quota_is_counted_on_the_card_whichever_validator_takes_the_ride(tmp_path):
    at = [dt.datetime(2026, 11, 24, 10, 0, tzinfo=BEIJING)]  # off-peak: free for the elderly, 30 a month
    one = _validator(tmp_path, "a", route="151", clock=lambda: at[0])
    two = _validator(
        tmp_path, "b", route="7", sam=kit.sam(bytes.fromhex("330100000002")), clock=lambda: at[0]
    )
    c = hz_card(2, categories={"elderly"})
    for i in range(4):
        v = (one, two)[i % 2]
        v.transport.insert(c)
        result = v.tap()
        assert (result.outcome, result.fare_fen, result.record["fare_rule_id"]) == (
            "approved",
            0,
            "hz-elderly-free",
        )
        at[0] += dt.timedelta(hours=2)
    assert TripCodec.for_fare(HZ).decode(c.transit)["q"] == {"hz-elderly-free": [2026 * 12 + 10, 4]}


def test_a_composite_purchase_writes_the_record_with_the_debit_or_not_at_all():
    c = hz_card(3)
    reader = InProcessReader(c)
    reader.open()
    record = TripCodec.for_fare(HZ).encode(STATE)
    assert reader.transmit(A.select_aid())[-2:] == b"\x90\x00"
    assert (
        reader.transmit(
            A.initialize_purchase(key_index=1, amount=100, terminal_id=kit.TERMINAL_ID, composite=True)
        )[-2:]
        == b"\x90\x00"
    )
    assert reader.transmit(A.update_capp_data_cache(record)) == b"\x90\x00"
    wrong = A.debit_purchase(
        terminal_seq=1, date=bytes.fromhex("20261124"), time=bytes.fromhex("083000"), mac1=bytes(4)
    )
    assert reader.transmit(wrong) == b"\x93\x02"  # MAC1 refused: no debit, and no record
    assert (c.balance, c.transit) == (5000, EMPTY_TRANSIT)
    assert reader.transmit(A.update_capp_data_cache(record)) == b"\x69\x85"  # only inside a purchase


@pytest.mark.pcsc
def test_two_validators_through_pcscd_share_the_journey_the_card_carries(pcscd, inserted, tmp_path):
    inserted(kit.psam(), port=PSAM_PORT, reader=PSAM_READER)
    c = hz_card(4)
    holder = inserted(c)
    at = [MORNING]
    bus = _validator(
        tmp_path,
        "bus",
        route="151",
        sam=Psam(PcscReader(PSAM_READER)),
        reader=PcscReader(pcscd),
        clock=lambda: at[0],
    )
    metro = _validator(
        tmp_path,
        "metro",
        route="1",
        service="metro",
        sam=kit.sam(bytes.fromhex("330100000002")),
        reader=PcscReader(pcscd),
        clock=lambda: at[0],
    )
    fares = []
    for minutes, v in [(0, bus), (40, metro), (100, bus), (100, metro), (100, bus), (100, metro), (100, bus)]:
        at[0] += dt.timedelta(minutes=minutes)
        result = v.tap()
        assert result.outcome == "approved", result.message
        fares.append((result.fare_fen, result.record["fare_rule_id"]))
    assert fares == [
        (180, "hz-card-91"),
        (260, "hz-bus-metro"),  # the metro gate never saw the card: the card said it came off bus 151
        (180, "hz-card-91"),
        (360, "hz-metro-card"),
        (180, "hz-card-91"),
        (340, "hz-day-cap"),  # 1500 fen a day, whichever validator took the rides
        (0, "hz-day-cap"),
    ]
    assert c.balance == 5000 - 1500
    # Torn before the debit: the record stays as it was; torn after: written with the debit.
    before = c.transit
    c.tear(0x54, "before")
    at[0] += dt.timedelta(minutes=5)
    assert metro.tap().outcome == "retap" and c.transit == before
    reinsert(holder, pcscd)
    at[0] = MORNING + dt.timedelta(days=1)
    c.tear(0x54, "after")
    assert bus.tap().outcome == "retap"
    state = TripCodec.for_fare(HZ).decode(c.transit)
    assert state["j"]["t0"] == int(at[0].timestamp()) // 60 and state["c"]["hz-day-cap"][1] == 180
    bus.sam.close()


def test_a_card_without_a_transit_file_pays_by_plain_purchase(tmp_path):
    class PlainCard(VirtualCard):
        def _records(self, sfi):
            return self.log if sfi == A.SFI_LOG else None

    base = hz_card(5)
    c = PlainCard(base.profile, base.keys, balance=1000)
    v = kit.validator(InProcessReader(c), tmp_path)
    v.fare = FixedFare(200)
    result = v.tap()
    assert (
        result.outcome == "approved"
        and result.record["tx_type"] == A.PURCHASE
        and "card_trip" not in result.record
    )
    assert c.log[0][9] == A.PURCHASE
