"""The PSAM: MAC1 and the MAC2 check per PBOC / JT/T 978 (80 70 / 80 72) with the terminal's own number and
serial, the block MAC and nothing else under the maintenance key, audited key loading, and a terminal
that holds no master key — in-process and through pcscd in the PSAM's own reader."""

from __future__ import annotations

import dataclasses
import json

import pytest

from citycard.terminal_kit.card import apdu as A
from citycard.terminal_kit.card.crypto import Algorithm, card_serial, key_check_value
from citycard.terminal_kit.card.iso import IsoCard, atr_parse
from citycard.terminal_kit.card.psam import PSAM_ATR, VirtualPsam, issuer_id, transport_encipher
from citycard.terminal_kit.card.vpcd import PSAM_PORT
from citycard.terminal_kit.devkeys import SIM_PSAM_TRANSPORT_KEY
from citycard.terminal_kit.provision import (
    ProvisioningError,
    PsamKey,
    audit_verify,
    keys_from_json,
    psam_load_keys,
)
from citycard.terminal_kit.reader import InProcessReader, PcscReader
from citycard.terminal_kit.sam import Psam
from tests.terminal_kit import kit
from tests.terminal_kit.conftest import PSAM_READER

CARD = "3304000100000000019"
VECTORS = {  # docs/terminal-protocol.md, "Test vectors"
    Algorithm.SM4: ("ab779353", "9395de71"),
    Algorithm.TRIPLE_DES: ("77749b73", "ab01a2fd"),
}


def blank_psam(terminal_no: bytes = kit.TERMINAL_ID, ttc: int = 0) -> VirtualPsam:
    return VirtualPsam(
        serial=bytes.fromhex("86010000000000000042"),
        terminal_no=terminal_no,
        transport_key=SIM_PSAM_TRANSPORT_KEY,
        ttc=ttc,
    )


def load(psam: VirtualPsam, tmp_path, keys: list[PsamKey], transport_key: bytes = SIM_PSAM_TRANSPORT_KEY):
    return psam_load_keys(
        transport=InProcessReader(psam),
        transport_key=transport_key,
        keys=keys,
        actor="李工 (嘉兴市民卡中心)",
        audit=tmp_path / "audit.jsonl",
        now=kit.NOW,
    )


def purchase_key(algorithm: Algorithm, issuer: str = "330400") -> PsamKey:
    return PsamKey("purchase", issuer, 1, algorithm, kit.PURCHASE_MASTER)


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_init_sam_for_purchase_gives_the_documented_mac1_and_checks_mac2(tmp_path, algorithm):
    psam = blank_psam(ttc=0x101)
    load(psam, tmp_path, [purchase_key(algorithm)])
    sam = Psam(InProcessReader(psam))
    assert sam.terminal_id == kit.TERMINAL_ID
    auth = sam.purchase(
        card_serial=card_serial(CARD),
        issuer_id=issuer_id("330400"),
        key_version=1,
        algorithm=algorithm,
        random=bytes.fromhex("11223344"),
        atc=5,
        amount=200,
        kind=A.PURCHASE,
        date=bytes.fromhex("20261124"),
        time=bytes.fromhex("083000"),
    )
    mac1, mac2 = VECTORS[algorithm]
    assert (auth.terminal_seq, auth.mac1.hex()) == (0x102, mac1)
    assert sam.mac2_valid(bytes.fromhex(mac2))
    assert not sam.mac2_valid(bytes.fromhex(mac2))  # the session is spent
    again = sam.purchase(
        card_serial=card_serial(CARD),
        issuer_id=issuer_id("330400"),
        key_version=1,
        algorithm=algorithm,
        random=bytes.fromhex("11223344"),
        atc=5,
        amount=200,
        kind=A.PURCHASE,
        date=bytes.fromhex("20261124"),
        time=bytes.fromhex("083000"),
    )
    assert again.terminal_seq == 0x103 and again.mac1 != auth.mac1  # a serial is never used twice
    assert not sam.mac2_valid(bytes.fromhex(mac2))  # MAC2 of another session


def test_a_card_whose_issuer_the_psam_does_not_serve_is_refused_before_any_debit(tmp_path):
    psam = blank_psam()
    load(psam, tmp_path, [purchase_key(Algorithm.SM4, issuer="330100")])
    card = kit.card(balance=1000)  # a Jiaxing card
    v = kit.validator(InProcessReader(card), tmp_path, sam_client=Psam(InProcessReader(psam)))
    result = v.tap()
    assert result.outcome == "error" and "no purchase key for issuer 330400" in result.message
    assert card.balance == 1000 and v.store.taps() == [] and card.mac_failures == {}


def test_the_maintenance_key_makes_the_block_mac_and_nothing_else(tmp_path):
    psam = blank_psam()
    load(psam, tmp_path, [PsamKey("maintenance", "330400", 1, Algorithm.SM4, kit.MAINTENANCE_MASTER)])
    reader = InProcessReader(psam)
    reader.open()

    def send(hex_: str) -> bytes:
        return reader.transmit(bytes.fromhex(hex_))

    assert send("00A40000021001")[-2:] == b"\x61\x06"  # T=0: the FCI waits for GET RESPONSE
    prepare = "801A0201" + "11" + "04" + card_serial(CARD).hex() + issuer_id("330400").hex()
    assert send(prepare)[-2:] == b"\x90\x00"
    assert send("80FA05000D" + "0102030400000000" + "8418000004" + "04")[-2:] == b"\x6a\x80"  # UNBLOCK: no
    assert send(prepare)[-2:] == b"\x90\x00"
    assert send("80FA05000D" + "0102030400000000" + "841E000004" + "04")[-2:] == b"\x61\x04"
    assert send("801A0101" + "11" + "04" + card_serial(CARD).hex() + issuer_id("330400").hex())[-2:] == (
        b"\x6a\x86"  # the purchase key is not offered for general MACs
    )


def test_key_loading_is_enciphered_macd_and_audited(tmp_path):
    psam = blank_psam()
    trace: list[bytes] = []

    class Recording(InProcessReader):
        def transmit(self, command: bytes) -> bytes:
            trace.append(command)
            return super().transmit(command)

    keys = [
        purchase_key(Algorithm.SM4),
        PsamKey("maintenance", "330400", 1, Algorithm.SM4, kit.MAINTENANCE_MASTER),
    ]
    entries = psam_load_keys(
        transport=Recording(psam),
        transport_key=SIM_PSAM_TRANSPORT_KEY,
        keys=keys,
        actor="李工",
        audit=tmp_path / "audit.jsonl",
        now=kit.NOW,
    )
    assert len(psam.keys) == 2
    assert not any(kit.PURCHASE_MASTER in apdu or kit.MAINTENANCE_MASTER in apdu for apdu in trace)
    assert transport_encipher(SIM_PSAM_TRANSPORT_KEY, kit.PURCHASE_MASTER) in trace[3]  # after the reads
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == entries
    assert entries[0] | {"prev": ""} == {
        "at": "2026-11-24T08:30:00+08:00",
        "actor": "李工",
        "event": "psam_key_loaded",
        "psam_serial": "86010000000000000042",
        "terminal_no": kit.TERMINAL_ID.hex(),
        "usage": "purchase",
        "issuer": "330400",
        "version": 1,
        "algorithm": "SM4",
        "kcv": key_check_value(kit.PURCHASE_MASTER, Algorithm.SM4).hex(),
        "prev": "",
    }
    assert kit.PURCHASE_MASTER.hex() not in "".join(lines)
    assert audit_verify(tmp_path / "audit.jsonl") == 2
    (tmp_path / "audit.jsonl").write_text(lines[1] + "\n")  # the first line removed
    with pytest.raises(ProvisioningError, match="line 1"):
        audit_verify(tmp_path / "audit.jsonl")


def test_a_wrong_transport_key_is_refused_and_three_lock_key_loading(tmp_path):
    psam = blank_psam()
    for _ in range(3):
        with pytest.raises(ProvisioningError, match="9302"):
            load(psam, tmp_path, [purchase_key(Algorithm.SM4)], transport_key=bytes(16))
    with pytest.raises(ProvisioningError, match="6983"):
        load(psam, tmp_path, [purchase_key(Algorithm.SM4)])
    assert psam.keys == {} and not (tmp_path / "audit.jsonl").exists()


def test_a_key_file_names_what_is_wrong():
    with pytest.raises(ProvisioningError, match="usage"):
        keys_from_json(
            '[{"usage": "load", "issuer": "330400", "version": 1, "algorithm": "SM4", "key": "00"}]'
        )
    with pytest.raises(ProvisioningError, match="16 bytes"):
        keys_from_json(
            '[{"usage": "purchase", "issuer": "330400", "version": 1, "algorithm": "SM4", "key": "00"}]'
        )


def _holds(value, secret: bytes, seen: set[int]) -> bool:
    """Whether ``secret`` is anywhere in the object graph of ``value``, cards (the hardware) excluded."""
    if id(value) in seen or isinstance(value, IsoCard):
        return False
    seen.add(id(value))
    if isinstance(value, bytes | bytearray):
        return secret in value
    if isinstance(value, dict):
        return any(_holds(k, secret, seen) or _holds(v, secret, seen) for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return any(_holds(v, secret, seen) for v in value)
    if dataclasses.is_dataclass(value) or hasattr(value, "__dict__"):
        return any(_holds(v, secret, seen) for v in vars(value).values())
    return False


@pytest.mark.pcsc
def test_a_tap_with_the_psam_in_its_own_pcsc_reader(pcscd, inserted, tmp_path):
    psam = kit.psam()
    inserted(psam, port=PSAM_PORT, reader=PSAM_READER)
    card = kit.card(balance=1000)
    inserted(card)
    sam = Psam(PcscReader(PSAM_READER))
    v = kit.validator(PcscReader(pcscd), tmp_path, sam_client=sam)
    first, second = v.tap(), v.tap()
    assert (first.outcome, second.outcome, card.balance) == ("approved", "approved", 600), first.message
    assert [t.record["terminal_seq"] for t in v.store.taps("complete")] == [1, 2] and psam.ttc == 2
    assert bytes(sam.transport._connection.getATR()) == PSAM_ATR and atr_parse(PSAM_ATR).protocols == (0,)
    secrets = (kit.PURCHASE_MASTER, kit.MAINTENANCE_MASTER, kit.TAC_MASTER, kit.LOAD_MASTER)
    assert not any(_holds(v, secret, set()) for secret in secrets), "the terminal holds a master key"
    sam.close()
