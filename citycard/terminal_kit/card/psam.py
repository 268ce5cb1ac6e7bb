"""The project's virtual PSAM (销售点终端安全存取模块): the terminal's secure element, a card of its own.

A terminal keeps its PSAM in a second reader ("Virtual PCD 00 01" behind pcscd, or an ``InProcessReader``
for fast tests). It holds the issuers' purchase and maintenance master keys, loaded by a separate,
audited provisioning step (``citycard.terminal_kit.provision``), and never hands a key out: the terminal
software sees only the MACs it computes. Commands (docs/terminal-protocol.md, "The PSAM"):

- ``00 B0 95 00 0A`` / ``00 B0 96 00 06``: the PSAM serial and the terminal number (files 0015, 0016);
- ``00 A4 00 00 02 1001``: select the e-purse application;
- INIT SAM FOR PURCHASE ``80 70 00 00 24``: the key of the card's issuer and key version, diversified by
  the card's serial, the purchase session key, the next terminal transaction serial (kept here, never
  reused) and MAC1 over the PSAM's own terminal number;
- CREDIT SAM FOR PURCHASE ``80 72 00 00 04``: checks the card's MAC2 for that session;
- ``80 1A`` + ``80 FA``: the APPLICATION BLOCK MAC under the issuer's maintenance key (the PSAM computes
  no other MAC with that key);
- GET CHALLENGE + WRITE KEY ``84 D4``: key loading, the key enciphered and the command MACed under the
  PSAM's transport key; three wrong MACs in a row lock key loading for good (``6983``).
"""

from __future__ import annotations

import hmac
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from citycard.terminal_kit.card import apdu as A
from citycard.terminal_kit.card.crypto import (
    Algorithm,
    diversify_serial,
    mac1,
    mac2,
    mac4,
    purchase_session_key,
)
from citycard.terminal_kit.card.iso import ApduError, Command, IsoCard, expect
from citycard.terminal_kit.card.virtual import BLOCK_HEADER

# Contact card, T=0 only: TS 3B, T0 09 (no interface bytes, 9 historical bytes, so no TCK): category 80,
# card service data 31 80 (selection by full DF name), pre-issuing data 65 "CCSAM".
PSAM_HISTORICAL = bytes.fromhex("80318065") + b"CCSAM"
PSAM_ATR = bytes([0x3B, len(PSAM_HISTORICAL)]) + PSAM_HISTORICAL
TRANSPORT_TRY_LIMIT = 3
USAGES = {A.KEY_PURCHASE: "purchase", A.KEY_MAINTENANCE: "maintenance"}


def issuer_id(division: str) -> bytes:
    """The 8-byte issuer identifier of a card (SFI 0x15 bytes 0–7): the division code in BCD, then FF."""
    return bytes.fromhex(division) + b"\xff" * 5


def transport_encipher(transport_key: bytes, key: bytes) -> bytes:
    """A key as WRITE KEY carries it: SM4-ECB under the PSAM's transport key."""
    enc = Cipher(algorithms.SM4(transport_key), modes.ECB()).encryptor()
    return enc.update(key) + enc.finalize()


def _transport_decipher(transport_key: bytes, enciphered: bytes) -> bytes:
    dec = Cipher(algorithms.SM4(transport_key), modes.ECB()).decryptor()
    return dec.update(enciphered) + dec.finalize()


def write_key_mac(transport_key: bytes, challenge: bytes, body: bytes) -> bytes:
    """WRITE KEY's MAC (SM4): over the PSAM's challenge, the command header and the body."""
    header = bytes([0x84, 0xD4, 0x00, 0x00, len(body) + 4])
    return mac4(transport_key, challenge + header + body, Algorithm.SM4)


@dataclass
class _Session:
    key: bytes
    amount: int
    algorithm: Algorithm


@dataclass
class VirtualPsam(IsoCard):
    serial: bytes  # 10 bytes
    terminal_no: bytes  # 6 bytes: the terminal number every MAC1 covers
    transport_key: bytes  # 16 bytes, SM4: key loading only
    ttc: int = 0  # terminal transaction counter, the last one used
    keys: dict[tuple[int, bytes, int, int], bytes] = field(default_factory=dict)  # (usage, issuer, ver, alg)
    transport_failures: int = 0
    memory: Path | None = None  # the simulator's EEPROM: saved after every change of the above
    get_response_style: bool = True  # a contact card in T=0
    _selected: bool = False
    _session: _Session | None = None
    _mac_key: tuple[bytes, Algorithm] | None = None
    _challenge: bytes | None = None
    _held_response: bytes | None = None
    _tear: tuple[int, str] | None = None

    ATR = PSAM_ATR
    INSTRUCTIONS = {
        **IsoCard.INSTRUCTIONS,
        (0x00, 0xA4): "_select",
        (0x00, 0xB0): "_read_binary",
        (0x00, 0x84): "_get_challenge",
        (0x84, 0xD4): "_write_key",
        (0x80, 0x70): "_init_sam_for_purchase",
        (0x80, 0x72): "_credit_sam_for_purchase",
        (0x80, 0x1A): "_init_for_descrypt",
        (0x80, 0xFA): "_descrypt",
    }

    def __post_init__(self) -> None:
        if len(self.serial) != 10 or len(self.terminal_no) != 6 or len(self.transport_key) != 16:
            raise ValueError(
                "a PSAM has a 10-byte serial, a 6-byte terminal number and a 16-byte transport key"
            )

    def reset(self) -> None:
        super().reset()
        self._selected = False
        self._session = None
        self._mac_key = None
        self._challenge = None

    def _answer(self, command: Command | None) -> tuple[bytes, int]:
        if command is None or command.ins not in (0x84, 0xD4, 0xC0):
            self._challenge = None  # a challenge is good for the next command only
        return super()._answer(command)

    # --- the simulator's EEPROM (a real PSAM keeps this in its own memory) ---------------------------

    def _persist(self) -> None:
        if self.memory is not None:
            self.save(self.memory)

    def save(self, path: Path) -> None:
        state = {
            "serial": self.serial.hex(),
            "terminal_no": self.terminal_no.hex(),
            "transport_key": self.transport_key.hex(),
            "ttc": self.ttc,
            "transport_failures": self.transport_failures,
            "keys": [[u, i.hex(), v, a, k.hex()] for (u, i, v, a), k in self.keys.items()],
        }
        path.write_text(json.dumps(state))

    @classmethod
    def load(cls, path: Path) -> VirtualPsam:
        """The PSAM saved in ``path``, saving itself there from now on."""
        state = json.loads(path.read_text())
        return cls(
            memory=path,
            serial=bytes.fromhex(state["serial"]),
            terminal_no=bytes.fromhex(state["terminal_no"]),
            transport_key=bytes.fromhex(state["transport_key"]),
            ttc=state["ttc"],
            transport_failures=state["transport_failures"],
            keys={(u, bytes.fromhex(i), v, a): bytes.fromhex(k) for u, i, v, a, k in state["keys"]},
        )

    # --- commands ------------------------------------------------------------------------------------

    def _select(self, c: Command) -> tuple[bytes, int]:
        expect(c.p1 == 0x00 and c.p2 == 0x00, A.SW_WRONG_P1P2)
        expect(len(c.data) == 2, A.SW_WRONG_LENGTH)
        self._selected = c.data == A.PSAM_DF
        self._session = None
        expect(self._selected, A.SW_FILE_NOT_FOUND)
        return b"\x6f\x04\x84\x02" + A.PSAM_DF, A.SW_OK

    def _read_binary(self, c: Command) -> tuple[bytes, int]:
        expect(bool(c.p1 & 0x80), A.SW_NO_CURRENT_EF)
        content = {A.SFI_PSAM_SERIAL: self.serial, A.SFI_PSAM_TERMINAL: self.terminal_no}.get(c.p1 & 0x1F)
        expect(content is not None, A.SW_FILE_NOT_FOUND)
        available = len(content) - c.p2
        expect(available > 0, A.SW_WRONG_OFFSET)
        if c.le and c.le > available:
            return b"", 0x6C00 | available
        return content[c.p2 : c.p2 + (c.le or available)], A.SW_OK

    def _get_challenge(self, c: Command) -> tuple[bytes, int]:
        expect(c.p1 == 0 and c.p2 == 0, A.SW_WRONG_P1P2)
        expect(c.le == 4, A.SW_WRONG_LENGTH)
        self._challenge = secrets.token_bytes(4)
        return self._challenge, A.SW_OK

    def _write_key(self, c: Command) -> tuple[bytes, int]:
        expect(c.p1 == 0 and c.p2 == 0, A.SW_WRONG_P1P2)
        expect(len(c.data) == 31 and c.le is None, A.SW_WRONG_LENGTH)
        expect(self.transport_failures < TRANSPORT_TRY_LIMIT, A.SW_AUTHENTICATION_BLOCKED)
        challenge, self._challenge = self._challenge, None
        expect(challenge is not None, A.SW_CONDITIONS_NOT_SATISFIED)
        body, mac = c.data[:27], c.data[27:]
        if not hmac.compare_digest(write_key_mac(self.transport_key, challenge, body), mac):
            self.transport_failures += 1
            self._persist()
            raise ApduError(A.SW_BAD_MAC)
        self.transport_failures = 0
        usage, issuer, version, algorithm = body[0], body[1:9], body[9], body[10]
        expect(usage in USAGES and algorithm in (a.value for a in Algorithm), A.SW_WRONG_DATA)
        self.keys[(usage, issuer, version, algorithm)] = _transport_decipher(self.transport_key, body[11:27])
        self._persist()
        return b"", A.SW_OK

    def _card_key(self, usage: int, *, issuer: bytes, version: int, algorithm: int, serial: bytes) -> bytes:
        expect(algorithm in (a.value for a in Algorithm), A.SW_WRONG_DATA)
        master = self.keys.get((usage, issuer, version, algorithm))
        expect(master is not None, A.SW_DATA_NOT_FOUND)  # no key for this issuer / version / algorithm
        return diversify_serial(master, serial, Algorithm(algorithm))

    def _init_sam_for_purchase(self, c: Command) -> tuple[bytes, int]:
        expect(c.p1 == 0 and c.p2 == 0, A.SW_WRONG_P1P2)
        expect(len(c.data) == 36, A.SW_WRONG_LENGTH)
        expect(self._selected, A.SW_CONDITIONS_NOT_SATISFIED)
        self._session = None
        d = c.data
        random, atc, amount, kind = (
            d[0:4],
            int.from_bytes(d[4:6], "big"),
            int.from_bytes(d[6:10], "big"),
            d[10],
        )
        date, time, version, algorithm, serial, issuer = d[11:15], d[15:18], d[18], d[19], d[20:28], d[28:36]
        expect(kind in (A.PURCHASE, A.COMPOSITE), A.SW_WRONG_DATA)
        dpk = self._card_key(
            A.KEY_PURCHASE, issuer=issuer, version=version, algorithm=algorithm, serial=serial
        )
        alg = Algorithm(algorithm)
        self.ttc += 1  # committed before the MAC leaves: a serial is never used twice
        self._persist()
        session = purchase_session_key(dpk, random=random, atc=atc, terminal_seq=self.ttc, alg=alg)
        self._session = _Session(key=session, amount=amount, algorithm=alg)
        mac = mac1(
            session, amount=amount, terminal_id=self.terminal_no, date=date, time=time, alg=alg, kind=kind
        )
        return self.ttc.to_bytes(4, "big") + mac, A.SW_OK

    def _credit_sam_for_purchase(self, c: Command) -> tuple[bytes, int]:
        expect(c.p1 == 0 and c.p2 == 0, A.SW_WRONG_P1P2)
        expect(len(c.data) == 4 and c.le is None, A.SW_WRONG_LENGTH)
        session, self._session = self._session, None
        expect(session is not None, A.SW_CONDITIONS_NOT_SATISFIED)
        expected = mac2(session.key, amount=session.amount, alg=session.algorithm)
        expect(hmac.compare_digest(expected, c.data), A.SW_BAD_MAC)
        return b"", A.SW_OK

    def _init_for_descrypt(self, c: Command) -> tuple[bytes, int]:
        expect(c.p1 == A.KEY_MAINTENANCE, A.SW_WRONG_P1P2)  # the only key usage offered for MACs
        expect(len(c.data) == 17 and c.le is None, A.SW_WRONG_LENGTH)
        expect(self._selected, A.SW_CONDITIONS_NOT_SATISFIED)
        self._mac_key = None
        algorithm, serial, issuer = c.data[0], c.data[1:9], c.data[9:17]
        key = self._card_key(c.p1, issuer=issuer, version=c.p2, algorithm=algorithm, serial=serial)
        self._mac_key = (key, Algorithm(algorithm))
        return b"", A.SW_OK

    def _descrypt(self, c: Command) -> tuple[bytes, int]:
        expect(c.p1 == 0x05 and c.p2 == 0x00, A.SW_WRONG_P1P2)
        expect(len(c.data) == 13, A.SW_WRONG_LENGTH)
        prepared, self._mac_key = self._mac_key, None
        expect(prepared is not None, A.SW_CONDITIONS_NOT_SATISFIED)
        # Only APPLICATION BLOCK's MAC: challenge(4) | 00000000 | 84 1E 00 00 04.
        expect(c.data[4:8] == bytes(4) and c.data[8:] == BLOCK_HEADER, A.SW_WRONG_DATA)
        return mac4(prepared[0], c.data, prepared[1]), A.SW_OK
