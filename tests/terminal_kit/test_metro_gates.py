"""Tap-in/tap-out at metro gates (闸机): each a composite purchase (INITIALIZE FOR CAPP PURCHASE, UPDATE CAPP
DATA CACHE, DEBIT FOR CAPP PURCHASE, transaction type 09) that writes the entry into the card's transit
record and clears it at the exit with the debit; the city's incomplete-journey rules; torn gate
transactions recovered like purchases — in-process and through pcscd."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib

import pytest

from citycard.tenants.fares import seeds
from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.card import apdu as A
from citycard.terminal_kit.card.virtual import EMPTY_TRANSIT, CardProfile, VirtualCard
from citycard.terminal_kit.card.vpcd import PSAM_PORT
from citycard.terminal_kit.cardno import card_number_build
from citycard.terminal_kit.fares import Card, FareEngine, Trip
from citycard.terminal_kit.reader import InProcessReader, PcscReader
from citycard.terminal_kit.sam import Psam
from citycard.terminal_kit.transit import FORMAT, FORMAT_GATED, TripCodec
from tests.terminal_kit import kit
from tests.terminal_kit.conftest import PSAM_READER, reinsert
from tests.terminal_kit.fare_docs import hangzhou


def metro_rules() -> FareEngine:
    doc = hangzhou()
    frag = copy.deepcopy(seeds.HANGZHOU_METRO)
    for key in ("stops", "lines", "areas", "fare_tables", "gate_rules"):
        doc[key] = frag[key]
    doc["fare_products"] += frag["fare_products"]
    return FareEngine.from_payload(doc)


HZ = metro_rules()
CODEC = TripCodec.for_fare(HZ)
MORNING = dt.datetime(2026, 11, 24, 8, 30, tzinfo=BEIJING)
ENTRY_TERMINAL = bytes.fromhex("330100000011")
EXIT_TERMINAL = bytes.fromhex("330100000012")


def s(n: int) -> str:
    return f"hz-1-{n:02d}"


def card(serial: int, *, division: str = "330100", balance: int = 5000) -> VirtualCard:
    number = card_number_build(division=division, scheme="01", serial=serial)
    return VirtualCard(CardProfile(card_no=number), kit.keys(), balance=balance)


class Gates:
    """An entry gate and an exit gate of Hangzhou line 1 sharing a clock (in-process, or pcscd readers)."""

    def __init__(self, tmp_path, *, entry_reader=None, exit_reader=None, entry_sam=None, at=MORNING):
        self.at = at
        self.gates = {}
        for name, reader, sam, terminal in (
            ("entry", entry_reader, entry_sam, ENTRY_TERMINAL),
            ("exit", exit_reader, None, EXIT_TERMINAL),
        ):
            (tmp_path / name).mkdir()
            v = kit.validator(
                reader or InProcessReader(), tmp_path / name, sam_client=sam or kit.sam(terminal)
            )
            v.fare, v.service, v.route, v.gate = HZ, "metro", "1", name
            v.clock = lambda: self.at
            self.gates[name] = v

    def tap(self, gate: str, station: str, card=None, *, minutes: float = 0):
        self.at += dt.timedelta(minutes=minutes)
        v = self.gates[gate]
        v.station = station
        if card is not None:
            v.transport.insert(card)
        return v.tap()


def test_the_entry_record_layout_is_the_documented_one():
    t = int(MORNING.timestamp()) // 60
    state = {
        "e": {"s": s(1), "l": "1", "t": t, "tm": ENTRY_TERMINAL.hex(), "d": 0},
        "c": {"hz-day-cap": [739_944, 360]},
    }
    record = CODEC.encode(state)
    assert record.hex() == (
        "016202"  # record id, length, format 02: in a gated system
        + "00" * 23  # no journey yet
        + "01"  # one counter
        + "0212e50b4a68000168"  # cap hz-day-cap, day 739944, 360 fen
        + "00" * 36  # 4 free counter slots of 5
        + "7b41"  # entry owner: SHA-256("hangzhou")[:2]
        + "01"  # entered
        + "c5e30d57"  # SHA-256("hangzhou:hz-1-01")[:4]
        + "31000000"  # line "1"
        + "01c89d3e"  # entry time: 2026-11-24 08:30 +08:00 in Unix minutes
        + "330100000011"  # the entry gate's terminal
        + "000000"  # nothing debited at the entry
        + "00000000"
    )
    assert hashlib.sha256(b"hangzhou:hz-1-01").hexdigest()[:8] == "c5e30d57" and t == 0x01C89D3E
    assert CODEC.decode(record) == state
    # cleared at the exit: back to format 01 with eight counter slots
    assert CODEC.encode({"c": state["c"]})[2] == FORMAT
    # another city's gate entry is kept as it is and gives no entry here
    other = TripCodec("shenzhen", stations=[s(1)]).decode(record)
    assert "e" not in other and other["~e"] == record[72:96].hex()
    assert TripCodec("shenzhen").encode(other)[72:96] == record[72:96]


def test_a_local_card_rides_entry_to_exit_and_the_entry_is_written_and_cleared_with_the_debits(tmp_path):
    g = Gates(tmp_path)
    c = card(1)
    entered = g.tap("entry", s(1), c)
    assert (entered.outcome, entered.fare_fen) == ("approved", 0), entered.message
    assert c.transit[2] == FORMAT_GATED and CODEC.decode(c.transit)["e"]["s"] == s(1)
    assert c.log[0][9] == A.COMPOSITE  # a composite purchase of 0 fen, in the card's log
    left = g.tap("exit", s(6), c, minutes=18)
    assert (left.outcome, left.fare_fen, c.balance) == ("approved", 360, 4640), left.message
    assert c.transit[2] == FORMAT and "e" not in CODEC.decode(c.transit)
    record = left.record
    assert record["tx_type"] == A.COMPOSITE and record["gate"] == "exit" and record["station"] == s(6)
    assert (record["entry_station"], record["entry_line"], record["entry_terminal"]) == (
        s(1),
        "1",
        ENTRY_TERMINAL.hex(),
    )
    assert record["entry_at"] == "2026-11-24T08:30:00+08:00" and record["fare_rule_id"] == "hz-metro-card"
    assert entered.record["gate"] == "entry" and entered.record["amount_fen"] == 0


def test_a_roaming_card_rides_the_host_metro_at_the_host_table(tmp_path):
    g = Gates(tmp_path)
    c = card(2, division="440300")  # a Shenzhen T-Union card in Hangzhou: no concession, the table fare
    assert g.tap("entry", s(2), c).outcome == "approved"
    left = g.tap("exit", s(12), c, minutes=25)
    assert (left.fare_fen, left.record["fare_rule_id"]) == (500, "hz-metro-km")  # 14.1 km: row <= 18


def test_exit_without_an_entry_pays_the_penalty(tmp_path):
    g = Gates(tmp_path)
    c = card(3)
    left = g.tap("exit", s(6), c)
    assert (left.outcome, left.fare_fen, left.record["fare_rule_id"]) == ("approved", 900, "gate:no-entry")
    assert "entry_station" not in left.record


def shenzhen_metro() -> FareEngine:
    """Another city's rules with a metro: Shenzhen's line 1 (its own stations, its own owner)."""
    doc = hangzhou()
    frag = copy.deepcopy(seeds.SHENZHEN_METRO)
    for key in ("stops", "lines", "areas", "fare_tables", "gate_rules"):
        doc[key] = frag[key]
    doc["fare_products"] += frag["fare_products"]
    doc.update(tenant="shenzhen", home_divisions=["440300"])
    return FareEngine.from_payload(doc)


def test_an_entry_written_by_another_citys_gate_is_no_entry_here_and_the_exit_closes_it(tmp_path):
    g = Gates(tmp_path)
    c = card(15, division="310000")  # a roaming Shanghai card
    g.gates["entry"].fare = shenzhen_metro()  # it entered at another city's gate
    assert g.tap("entry", "sz-1-01", c).outcome == "approved"
    held = CODEC.decode(c.transit)
    assert "e" not in held and held["~e"]  # Hangzhou's gates cannot read it as an entry
    left = g.tap("exit", s(6), c, minutes=30)
    # Hangzhou's rule for an exit without a valid entry: the penalty, and the card is out of the gates
    assert (left.outcome, left.fare_fen, left.record["fare_rule_id"]) == ("approved", 900, "gate:no-entry")
    assert "entry_station" not in left.record
    assert c.transit[2] == FORMAT and "~e" not in CODEC.decode(c.transit)
    quote = HZ.exit(kit_card(c), trip_out(s(6)), held)
    assert "another city's gate" in " ".join(quote.trace)
    # the next journey in Hangzhou is an ordinary one
    g.gates["entry"].fare = HZ
    assert g.tap("entry", s(1), c, minutes=5).fare_fen == 0
    assert g.tap("exit", s(6), c, minutes=20).fare_fen == 360  # 9.4 km, 90% for a YRD card


def kit_card(c: VirtualCard) -> Card:
    return Card(issuer=c.profile.card_no[:6])


def trip_out(station: str) -> Trip:
    return Trip("metro", "1", MORNING, destination=station)


def test_out_where_you_came_in_within_the_window_pays_the_minimum(tmp_path):
    g = Gates(tmp_path)
    c = card(4)
    g.tap("entry", s(5), c)
    left = g.tap("exit", s(5), c, minutes=12)
    assert (left.fare_fen, left.record["fare_rule_id"]) == (200, "gate:same-station")


def test_no_exit_within_the_limit_pays_the_maximum_at_the_next_entry(tmp_path):
    g = Gates(tmp_path)
    c = card(5)
    g.tap("entry", s(1), c)
    again = g.tap("entry", s(3), c, minutes=300)
    assert (again.fare_fen, again.record["fare_rule_id"]) == (900, "gate:incomplete")
    left = g.tap("exit", s(4), c, minutes=5)  # the new journey: 3.0 km, the first row
    assert (left.fare_fen, c.balance) == (180, 5000 - 900 - 180)


def test_insufficient_balance_at_the_exit_is_declined_and_the_entry_kept(tmp_path):
    g = Gates(tmp_path)
    c = card(6, balance=300)
    g.tap("entry", s(1), c)
    left = g.tap("exit", s(12), c, minutes=30)
    assert left.outcome == "declined" and c.balance == 300
    assert CODEC.decode(c.transit)["e"]["s"] == s(1)


@pytest.mark.parametrize(("when", "charged"), [("after", True), ("before", False)])
def test_a_torn_exit_recovers_like_a_purchase_and_charges_once(tmp_path, when, charged):
    g = Gates(tmp_path)
    c = card(7)
    g.tap("entry", s(1), c)
    c.tear(0x54, when)
    assert g.tap("exit", s(6), c, minutes=20).outcome == "retap"
    assert c.balance == (4640 if charged else 5000)
    assert ("e" in CODEC.decode(c.transit)) is not charged  # the record changed with the debit or not at all
    retap = g.tap("exit", s(6), c, minutes=0.5)
    assert retap.outcome == "approved" and c.balance == 4640
    assert retap.record["status"] == ("torn_resolved" if charged else "complete")
    statuses = sorted(t.state for t in g.gates["exit"].store.taps())
    assert statuses == (["complete"] if charged else ["complete", "void"])


# --- through pcscd ----------------------------------------------------------------------------------------


@pytest.mark.pcsc
def test_gates_through_pcscd_every_case(pcscd, inserted, tmp_path):
    inserted(kit.psam(ENTRY_TERMINAL), port=PSAM_PORT, reader=PSAM_READER)
    c = card(11, division="440300", balance=5000)  # roaming
    holder = inserted(c)
    g = Gates(
        tmp_path,
        entry_reader=PcscReader(pcscd),
        exit_reader=PcscReader(pcscd),
        entry_sam=Psam(PcscReader(PSAM_READER)),
    )
    try:
        results = [
            g.tap("entry", s(1)),
            g.tap("exit", s(6), minutes=20),  # 9.4 km: 400
            g.tap("exit", s(7), minutes=30),  # no entry: 900
            g.tap("entry", s(7), minutes=5),
            g.tap("exit", s(7), minutes=10),  # same station: 200
            g.tap("entry", s(2), minutes=5),
            g.tap("entry", s(3), minutes=300),  # incomplete: 900
        ]
        assert [(r.outcome, r.fare_fen) for r in results] == [
            ("approved", 0),
            ("approved", 400),
            ("approved", 900),
            ("approved", 0),
            ("approved", 200),
            ("approved", 0),
            ("approved", 900),
        ], [r.message for r in results]
        assert c.balance == 5000 - 2400
        # a torn exit after the debit, back in the reader: completed, not charged again
        c.tear(0x54, "after")
        assert g.tap("exit", s(4), minutes=10).outcome == "retap"
        reinsert(holder, pcscd)
        retap = g.tap("exit", s(4), minutes=0.2)
        assert (retap.outcome, retap.record["status"], c.balance) == ("approved", "torn_resolved", 2400)
        assert "e" not in CODEC.decode(c.transit)
    finally:
        g.gates["entry"].sam.close()


def test_an_unpersonalised_transit_record_counts_as_no_entry(tmp_path):
    g = Gates(tmp_path)
    c = card(12)
    assert c.transit == EMPTY_TRANSIT
    assert g.tap("exit", s(2), c).record["fare_rule_id"] == "gate:no-entry"


def test_the_entry_apdus_are_the_documented_ones(tmp_path):
    class Recording(InProcessReader):
        sent: list[bytes] = []

        def transmit(self, command: bytes) -> bytes:
            self.sent.append(command)
            return super().transmit(command)

    g = Gates(tmp_path, entry_reader=Recording())
    c = card(13)
    c.offline_atc = 0
    g.gates["entry"].transport.insert(c)
    g.gates["entry"].station = s(1)
    assert g.gates["entry"].tap().outcome == "approved"
    sent = [x.hex() for x in Recording.sent]
    i = sent.index("00b201cc64")
    assert sent[i + 1] == "805003020b0100000000" + "330100000011" + "0f"
    assert sent[i + 2].startswith("80dc01c864016202") and bytes.fromhex(sent[i + 2])[5:] == c.transit
    assert sent[i + 3].startswith("805401000f")


@pytest.mark.parametrize(("when", "entered"), [("after", True), ("before", False)])
def test_a_torn_entry_recovers_like_a_purchase_and_the_gate_opens_once(tmp_path, when, entered):
    g = Gates(tmp_path)
    c = card(14)
    c.tear(0x54, when)
    assert g.tap("entry", s(2), c).outcome == "retap"
    assert ("e" in CODEC.decode(c.transit)) is entered  # written with the 0-fen debit or not at all
    retap = g.tap("entry", s(2), c, minutes=0.3)
    assert retap.outcome == "approved" and c.balance == 5000
    assert retap.record["status"] == ("torn_resolved" if entered else "complete")
    assert CODEC.decode(c.transit)["e"]["s"] == s(2)
    left = g.tap("exit", s(6), c, minutes=15)
    assert (left.fare_fen, c.balance) == (270, 4730)  # one journey: 7.3 km, 300 x 90%
