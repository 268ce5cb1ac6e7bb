"""ISO 7816 / PC/SC conformance of the virtual citizen card, through pcscd and vpcd as a reader sees it.

A table of well-formed and malformed command APDUs, sent in order through pyscard (no help from the
terminal's channel: no GET RESPONSE, no Le resend), each checked against the status word ISO/IEC 7816-4
or the PBOC e-purse / JT/T 978 command set gives; the ATR checked against PC/SC part 3; the T=0 mode's
answers; the same kind of script run by ``scriptor`` from pcsc-tools; and the try counters of the keys.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from citycard.terminal_kit.card import apdu as A
from citycard.terminal_kit.card.crypto import Algorithm
from citycard.terminal_kit.card.iso import atr_parse
from citycard.terminal_kit.card.virtual import ATR, HISTORICAL_BYTES, MAC_TRY_LIMIT, VirtualCard
from citycard.terminal_kit.hotlist import Hotlist
from citycard.terminal_kit.reader import InProcessReader
from tests.terminal_kit import kit

AID = A.AID_TUNION.hex()
SCRIPT = Path(__file__).parent / "scripts" / "conformance.scriptor"
ISO = "ISO 7816-4"
PBOC = "PBOC e-purse"

# (what, command in hex, expected SW, where the SW comes from), sent in this order to a fresh card.
TABLE = [
    ("1-byte command", "FF", 0x6700, "ISO 7816-3: a command has a 4-byte header"),
    ("2-byte command", "00A4", 0x6700, ISO),
    ("3-byte command", "00A404", 0x6700, ISO),
    ("PC/SC pseudo-APDU GET DATA (class FF)", "FFCA000000", 0x6E00, ISO),
    ("class 20 (RFU)", "20A4040000", 0x6E00, ISO),
    ("unknown instruction before SELECT", "80CA9F7F00", 0x6D00, ISO),
    ("instruction 00 before SELECT", "00000000", 0x6D00, ISO),
    ("SELECT in the proprietary class", f"80A4040008{AID}00", 0x6E00, ISO),
    ("logical channel 1", f"01A4040008{AID}00", 0x6881, ISO),
    ("logical channel 4 (further interindustry class)", f"40A4040008{AID}00", 0x6881, ISO),
    ("secure messaging on class 00", f"0CA4040008{AID}00", 0x6882, ISO),
    ("command chaining", f"10A4040008{AID}00", 0x6884, ISO),
    ("Lc longer than the data", "00A4040008A0000006", 0x6700, ISO),
    ("two bytes after the data", f"00A4040008{AID}0000", 0x6700, ISO),
    ("extended length", f"00A404000000 08{AID}".replace(" ", ""), 0x6700, "short lengths only"),
    ("GET RESPONSE with nothing held", "00C0000000", 0x6985, ISO),
    ("READ BINARY before SELECT", "00B095001E", 0x6985, PBOC),
    ("GET BALANCE before SELECT", "805C000204", 0x6985, PBOC),
    ("GET CHALLENGE, 4 bytes", "0084000004", 0x9000, ISO),
    ("GET CHALLENGE, 5 bytes", "0084000005", 0x6700, PBOC),
    ("SELECT by file identifier", "00A40000023F00", 0x6A86, "only selection by DF name"),
    ("SELECT an unknown application", "00A4040008A00000063201019900", 0x6A82, ISO),
    ("SELECT by partial DF name", "00A4040007A000000632010100", 0x9000, ISO),
    ("SELECT the T-Union e-purse", f"00A4040008{AID}00", 0x9000, PBOC),
    ("READ BINARY SFI 15, 30 bytes", "00B095001E", 0x9000, PBOC),
    ("READ BINARY SFI 15, Le 0 (all)", "00B0950000", 0x9000, ISO),
    ("READ BINARY asking for 64 bytes", "00B0950040", 0x6C1E, ISO),
    ("READ BINARY past the end", "00B0951E01", 0x6B00, ISO),
    ("READ BINARY without SFI (no current EF)", "00B0000004", 0x6986, ISO),
    ("READ BINARY of an unknown SFI", "00B09A0004", 0x6A82, ISO),
    ("READ BINARY of the log (a record file)", "00B0980017", 0x6981, ISO),
    ("READ BINARY with data", "00B0950001FF", 0x6700, ISO),
    ("READ RECORD of the empty log", "00B201C417", 0x6A83, PBOC),
    ("READ RECORD, P2 not 'record in P1'", "00B201C517", 0x6A86, ISO),
    ("READ RECORD of a binary file", "00B201AC17", 0x6981, ISO),
    ("READ RECORD of the transit record", "00B201CC64", 0x9000, "this card (docs/terminal-protocol.md)"),
    ("READ RECORD with a wrong Le", "00B201CC10", 0x6C64, ISO),
    ("GET BALANCE", "805C000204", 0x9000, PBOC),
    ("GET BALANCE of the e-deposit (absent)", "805C000104", 0x6A86, PBOC),
    ("GET BALANCE, Le 8", "805C000208", 0x6C04, ISO),
    ("INITIALIZE FOR PURCHASE, P1 05", "805005020B01000000013301000000010F", 0x6A86, PBOC),
    ("INITIALIZE FOR PURCHASE, Lc 0A", "805001020A0100000001330100000001", 0x6700, PBOC),
    ("INITIALIZE FOR PURCHASE, key index 2", "805001020B02000000013301000000010F", 0x9403, PBOC),
    ("INITIALIZE FOR PURCHASE over the balance", "805001020B017FFFFFFF3301000000010F", 0x9401, PBOC),
    (
        "DEBIT without INITIALIZE",
        "805401000F" + "00000001" + "20261124083000" + "00000000" + "08",
        0x6985,
        PBOC,
    ),
    ("UPDATE CAPP DATA CACHE outside a composite purchase", "80DC01C864" + "0162" + "00" * 98, 0x6985, PBOC),
    ("GET TRANSACTION PROVE, nothing to prove", "805A0006020001" + "08", 0x9406, PBOC),
    ("GET TRANSACTION PROVE, type 07", "805A0007020001" + "08", 0x6A86, PBOC),
    ("INITIALIZE FOR CAPP PURCHASE", "805003020B01000000003301000000010F", 0x9000, "JT/T 978"),
    ("UPDATE CAPP DATA CACHE, other record id", "80DC02C864" + "0262" + "00" * 98, 0x6A83, ISO),
    ("UPDATE CAPP DATA CACHE, SFI 1A", "80DC01D064" + "0162" + "00" * 98, 0x6A86, ISO),
    ("UPDATE CAPP DATA CACHE, short record", "80DC01C810" + "010E" + "00" * 14, 0x6700, ISO),
    ("UPDATE CAPP DATA CACHE, record id byte wrong", "80DC01C864" + "0262" + "00" * 98, 0x6A80, ISO),
    ("UPDATE CAPP DATA CACHE", "80DC01C864" + "0162" + "00" * 98, 0x9000, "JT/T 978"),
    ("APPLICATION BLOCK, P1 01", "841E010004" + "00000000", 0x6A86, ISO),
    ("APPLICATION BLOCK without a challenge", "841E000004" + "00000000", 0x6985, PBOC),
    ("unknown proprietary instruction", "8010000000", 0x6D00, ISO),
    ("READ BINARY in the proprietary class", "80B095001E", 0x6E00, ISO),
]


def _send(connection, command: str) -> tuple[bytes, int]:
    data, sw1, sw2 = connection.transmit(list(bytes.fromhex(command)))
    return bytes(data), (sw1 << 8) | sw2


@pytest.fixture
def connection(pcscd, inserted):
    from smartcard.System import readers

    def connect(card: VirtualCard):
        inserted(card)
        reader = next(r for r in readers() if str(r) == pcscd)
        conn = reader.createConnection()
        conn.connect()
        opened.append(conn)
        return conn

    opened: list = []
    yield connect
    for conn in opened:
        conn.disconnect()


pytestmark = pytest.mark.pcsc


def test_the_atr_is_what_a_pcsc_reader_builds_from_an_iso_14443_4_cards_ats(connection):
    conn = connection(kit.card())
    atr = bytes(conn.getATR())
    assert atr == ATR
    assert atr[:4] == bytes.fromhex("3B8F8001") and atr[1] & 0x0F == len(HISTORICAL_BYTES)
    parsed = atr_parse(atr)
    assert parsed.tck_ok and 1 in parsed.protocols
    assert parsed.historical == HISTORICAL_BYTES
    # Category 80 (COMPACT-TLV), card service data 31 C0, the AID (tag F, 8 bytes), status 82 90 00.
    assert parsed.historical[0] == 0x80 and parsed.historical[3:12] == b"\xf8" + A.AID_TUNION
    assert atr != bytes.fromhex("3B8F8001804F0CA000000306030001000000006A")  # not a MIFARE Classic 1K


def test_every_command_of_the_table_gets_its_status_word_through_pcscd(connection):
    card = kit.card(balance=1000)
    conn = connection(card)
    answers = [(what, _send(conn, command)[1], expected) for what, command, expected, _ in TABLE]
    wrong = [
        f"{what}: {got:04X}, expected {expected:04X}" for what, got, expected in answers if got != expected
    ]
    assert not wrong, "\n".join(wrong)
    assert card.balance == 1000 and not card.blocked and not card.locked


def test_a_card_in_t0_mode_answers_61xx_for_data_and_its_errors_directly(connection):
    card = kit.card(balance=1000)
    card.get_response_style = True
    conn = connection(card)
    data, sw = _send(conn, f"00A4040008{AID}00")
    assert sw == 0x610C and data == b""
    data, sw = _send(conn, "00C000000C")
    assert sw == 0x9000 and data[:2] == b"\x6f\x0a"
    assert _send(conn, "805001020B017FFFFFFF3301000000010F")[1] == 0x9401
    assert _send(conn, "805001020B02000000013301000000010F")[1] == 0x9403
    assert _send(conn, "805001020B010000000133010000000112")[1] == 0x610F  # Le ignored: 15 bytes
    data, sw = _send(conn, "00C0000008")  # part of it: the rest stays
    assert (len(data), sw) == (8, 0x6107)
    data, sw = _send(conn, "00C0000007")
    assert (len(data), sw) == (7, 0x9000)
    assert _send(conn, "805C000204")[1] == 0x9000  # case 2: data straight away, even in T=0


@pytest.mark.skipif(
    not shutil.which("scriptor"), reason="scriptor needs pcsc-tools (apt-get install pcsc-tools)"
)
def test_scriptor_from_pcsc_tools_runs_the_conformance_script(pcscd, inserted):
    inserted(kit.card(balance=5000))
    expected = [
        int(line.split()[2], 16) for line in SCRIPT.read_text().splitlines() if line.startswith("# expect ")
    ]
    run = subprocess.run(
        ["scriptor", "-r", pcscd, str(SCRIPT)], capture_output=True, text=True, timeout=30, check=True
    )
    # Each answer is "< data SW1 SW2 : meaning", long data wrapped over several lines.
    answers = re.findall(r"^< ((?:[0-9A-F]{2} ?|\n)+) : ", run.stdout, flags=re.MULTILINE)
    got = [int("".join(answer.split()[-2:]), 16) for answer in answers]
    assert got == expected, run.stdout


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_wrong_mac1s_count_and_the_last_try_locks_the_application(tmp_path, algorithm):
    card = kit.card(balance=1000, algorithm=algorithm)
    reader = InProcessReader(card)
    reader.open()

    def wrong_debit() -> int:
        assert reader.transmit(bytes.fromhex(f"00A4040008{AID}00"))[-2:] == b"\x90\x00"
        assert reader.transmit(bytes.fromhex("805001020B01000000643301000000010F"))[-2:] == b"\x90\x00"
        answer = reader.transmit(
            bytes.fromhex("805401000F" + "00000001" + "20261124083000" + "DEADBEEF" + "08")
        )
        return int.from_bytes(answer[-2:], "big")

    for _ in range(MAC_TRY_LIMIT - 1):
        assert wrong_debit() == A.SW_BAD_MAC
    assert card.mac_failures == {"purchase": MAC_TRY_LIMIT - 1} and not card.locked
    # A right MAC1 resets the counter: a real tap goes through.
    assert kit.validator(InProcessReader(card), tmp_path).tap().outcome == "approved"
    assert card.mac_failures == {}
    reader.open()
    for _ in range(MAC_TRY_LIMIT - 1):
        assert wrong_debit() == A.SW_BAD_MAC
    assert wrong_debit() == A.SW_BAD_MAC and card.locked
    assert reader.transmit(bytes.fromhex(f"00A4040008{AID}00")) == A.SW_APPLICATION_LOCKED.to_bytes(2, "big")
    result = kit.validator(InProcessReader(card), tmp_path).tap()
    assert result.outcome == "blocked" and "9303" in result.message
    assert card.balance == 800


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_the_hotlist_blocks_cards_of_every_algorithm(tmp_path, algorithm):
    card = kit.card(algorithm=algorithm)
    v = kit.validator(InProcessReader(card), tmp_path)
    v.hotlist = Hotlist(version=1, cards=frozenset({card.profile.card_no}))
    assert v.tap().outcome == "blocked"
    assert card.blocked and card.mac_failures == {} and card.balance == 5000
