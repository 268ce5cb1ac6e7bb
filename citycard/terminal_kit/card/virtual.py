"""The project's own virtual citizen card (虚拟市民卡): an e-purse application answering APDUs.

``VirtualCard.process(apdu) -> response`` is the whole card; it runs in-process for unit tests
(``citycard.terminal_kit.reader.InProcessReader``) or behind pcscd through the vpcd driver
(``citycard.terminal_kit.card.vpcd.VpcdCard``). Files and layouts are in docs/terminal-protocol.md.
A test can make the card lose power in the middle of a command (``tear``), before or after it acted.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass, field

from citycard.terminal_kit.card import apdu as A
from citycard.terminal_kit.card.crypto import (
    Algorithm,
    diversify,
    encrypt_block,
    mac4,
    pad_iso9797_m2,
    purchase_session_key,
    tac_compute,
)
from citycard.terminal_kit.card.crypto import (
    mac1 as compute_mac1,
)
from citycard.terminal_kit.card.crypto import (
    mac2 as compute_mac2,
)
from citycard.terminal_kit.cardno import card_number_bcd

CATEGORY_BITS = {"elderly": 0x01, "student": 0x02, "disabled": 0x04, "veteran": 0x08, "low_income": 0x10}
# Transit passes loaded on the card (management file byte 2), e.g. the bus monthly pass (公交月票).
PASS_BITS = {"monthly": 0x01}
ATR = bytes.fromhex("3B8F8001804F0CA000000306030001000000006A")  # contactless PC/SC-style ATR
LOG_SIZE = 10


class CardTorn(Exception):
    """The card lost power during a command (raised by a test's tear; transports turn it into removal)."""


@dataclass(frozen=True)
class IssuerKeys:
    """Master keys a card's keys are diversified from: purchase (network), TAC and load (issuer), maintenance."""

    purchase_master: bytes
    tac_master: bytes
    load_master: bytes
    maintenance_master: bytes
    algorithm: Algorithm = Algorithm.SM4
    key_index: int = 1


@dataclass
class CardProfile:
    card_no: str
    scheme_code: str = "01"
    categories: frozenset[str] = frozenset()
    passes: frozenset[str] = frozenset()
    holder_name: str = ""
    valid_from: dt.date = dt.date(2024, 1, 1)
    valid_to: dt.date = dt.date(2034, 12, 31)


def _bcd_date(day: dt.date) -> bytes:
    return bytes.fromhex(day.strftime("%Y%m%d"))


@dataclass
class _Pending:
    amount: int
    terminal_id: bytes
    random: bytes
    atc: int
    kind: str  # "purchase" | "load"
    session: bytes | None = None


@dataclass
class _Done:
    atc_after: int
    mac2: bytes
    tac: bytes


@dataclass
class VirtualCard:
    profile: CardProfile
    keys: IssuerKeys
    balance: int = 0
    offline_atc: int = 0
    online_atc: int = 0
    blocked: bool = False
    get_response_style: bool = False  # answer case-4 commands with 61xx, as T=0 cards do
    log: list[bytes] = field(default_factory=list)
    _selected: bool = False
    _pending: _Pending | None = None
    _last_purchase: _Done | None = None
    _challenge: bytes | None = None
    _held_response: bytes | None = None
    _tear: tuple[int, str] | None = None

    # --- keys of this card -----------------------------------------------------------------------

    @property
    def algorithm(self) -> Algorithm:
        return self.keys.algorithm

    def _key(self, master: bytes) -> bytes:
        return diversify(master, self.profile.card_no, self.algorithm)

    # --- test hooks --------------------------------------------------------------------------------

    def tear(self, ins: int, when: str = "after") -> None:
        """Lose power at the next command ``ins``, ``before`` acting on it or ``after`` (answer lost)."""
        if when not in {"before", "after"}:
            raise ValueError("when is 'before' or 'after'")
        self._tear = (ins, when)

    def reset(self) -> None:
        """Power cycle: volatile state is gone; the balance, counters and log stay."""
        self._selected = False
        self._pending = None
        self._challenge = None
        self._held_response = None

    # --- files ---------------------------------------------------------------------------------------

    def _file(self, sfi: int) -> bytes | None:
        p = self.profile
        if sfi == A.SFI_PUBLIC:
            issuer = bytes.fromhex(p.card_no[:6]) + b"\xff" * 5
            return (
                issuer
                + b"\x03\x01"
                + card_number_bcd(p.card_no)
                + _bcd_date(p.valid_from)
                + _bcd_date(p.valid_to)
                + b"\x00\x00"
            )
        if sfi == A.SFI_HOLDER:
            name = p.holder_name.encode("gbk")[:20].ljust(20, b"\x00")
            return b"\x00\x00" + name + b"\x00" * 33
        if sfi == A.SFI_MANAGEMENT:
            bits = 0
            for category in p.categories:
                bits |= CATEGORY_BITS.get(category, 0)
            passes = 0
            for name in p.passes:
                passes |= PASS_BITS.get(name, 0)
            return bytes.fromhex(p.scheme_code) + bytes([bits, passes]) + b"\x00" * 57
        return None

    # --- the card ----------------------------------------------------------------------------------

    def process(self, command: bytes) -> bytes:
        if len(command) < 4:
            return A.SW_WRONG_LENGTH.to_bytes(2, "big")
        ins = command[1]
        tear = self._tear
        if tear and tear[0] == ins:
            self._tear = None
            if tear[1] == "before":
                self.reset()
                raise CardTorn(f"power lost before {ins:02X}")
        data, sw = self._dispatch(command)
        if tear and tear[0] == ins:
            self.reset()
            raise CardTorn(f"power lost after {ins:02X}")
        if (self.get_response_style and data and command[0] != 0x00) or (
            self.get_response_style and ins == 0x50
        ):
            self._held_response = data + sw.to_bytes(2, "big")
            return bytes([0x61, len(data)])
        return data + sw.to_bytes(2, "big")

    def _dispatch(self, c: bytes) -> tuple[bytes, int]:
        cla, ins, p1, p2 = c[0], c[1], c[2], c[3]
        body = c[5 : 5 + c[4]] if len(c) > 5 else b""
        if ins == 0xC0 and cla == 0x00:
            held, self._held_response = self._held_response, None
            if held is None:
                return b"", A.SW_CONDITIONS_NOT_SATISFIED
            return held[:-2], int.from_bytes(held[-2:], "big")
        if ins == 0xA4 and cla == 0x00:
            if p1 != 0x04 or body != A.AID_TUNION:
                self._selected = False
                return b"", A.SW_FILE_NOT_FOUND
            self._selected = True
            fci = (
                b"\x6f" + bytes([len(A.AID_TUNION) + 2]) + b"\x84" + bytes([len(A.AID_TUNION)]) + A.AID_TUNION
            )
            return fci, A.SW_FILE_INVALIDATED if self.blocked else A.SW_OK
        if not self._selected:
            return b"", A.SW_CONDITIONS_NOT_SATISFIED
        if ins == 0xB0 and cla == 0x00:
            return self._read_binary(p1, p2, c[4] if len(c) >= 5 else 0)
        if ins == 0xB2 and cla == 0x00:
            return self._read_record(p1, p2, c[4] if len(c) >= 5 else 0)
        if ins == 0x84 and cla == 0x00:
            self._challenge = secrets.token_bytes(4)
            return self._challenge, A.SW_OK
        if ins == 0x1E and cla == 0x84:
            return self._application_block(body)
        if cla != 0x80:
            return b"", A.SW_CLA_NOT_SUPPORTED
        if self.blocked and ins in {0x50, 0x54, 0x52}:
            return b"", A.SW_CONDITIONS_NOT_SATISFIED
        if ins == 0x5C:
            if p2 != 0x02:
                return b"", A.SW_WRONG_P1P2
            return self.balance.to_bytes(4, "big"), A.SW_OK
        if ins == 0x50 and p1 == 0x01:
            return self._initialize_purchase(body)
        if ins == 0x54:
            return self._debit_purchase(body)
        if ins == 0x5A:
            return self._prove(p2, body)
        if ins == 0x50 and p1 == 0x00:
            return self._initialize_load(body)
        if ins == 0x52:
            return self._credit_load(body)
        return b"", A.SW_INS_NOT_SUPPORTED

    def _read_binary(self, p1: int, offset: int, le: int) -> tuple[bytes, int]:
        if not p1 & 0x80:
            return b"", A.SW_WRONG_P1P2
        content = self._file(p1 & 0x1F)
        if content is None:
            return b"", A.SW_FILE_NOT_FOUND
        available = len(content) - offset
        if available <= 0:
            return b"", A.SW_WRONG_P1P2
        if le > available:
            return b"", 0x6C00 | available  # wrong Le: resend with the exact length
        return content[offset : offset + (le or available)], A.SW_OK

    def _read_record(self, record: int, p2: int, le: int) -> tuple[bytes, int]:
        if p2 & 0x07 != 0x04 or (p2 >> 3) != A.SFI_LOG:
            return b"", A.SW_FILE_NOT_FOUND
        if not 1 <= record <= len(self.log):
            return b"", A.SW_RECORD_NOT_FOUND
        entry = self.log[record - 1]
        if le and le != len(entry):
            return b"", 0x6C00 | len(entry)
        return entry, A.SW_OK

    def _initialize_purchase(self, body: bytes) -> tuple[bytes, int]:
        if len(body) != 11:
            return b"", A.SW_WRONG_LENGTH
        if body[0] != self.keys.key_index:
            return b"", A.SW_SECURITY_NOT_SATISFIED
        amount = int.from_bytes(body[1:5], "big")
        if amount > self.balance:
            self._pending = None
            return b"", A.SW_INSUFFICIENT_BALANCE
        random = secrets.token_bytes(4)
        self._pending = _Pending(
            amount=amount, terminal_id=body[5:11], random=random, atc=self.offline_atc, kind="purchase"
        )
        answer = (
            self.balance.to_bytes(4, "big")
            + self.offline_atc.to_bytes(2, "big")
            + b"\x00\x00\x00"
            + bytes([self.keys.key_index, int(self.algorithm)])
            + random
        )
        return answer, A.SW_OK

    def _debit_purchase(self, body: bytes) -> tuple[bytes, int]:
        pending = self._pending
        if pending is None or pending.kind != "purchase":
            return b"", A.SW_CONDITIONS_NOT_SATISFIED
        if len(body) != 15:
            return b"", A.SW_WRONG_LENGTH
        seq, date, time, mac1 = int.from_bytes(body[0:4], "big"), body[4:8], body[8:11], body[11:15]
        self._pending = None
        dpk = self._key(self.keys.purchase_master)
        session = purchase_session_key(
            dpk, random=pending.random, atc=pending.atc, terminal_seq=seq, alg=self.algorithm
        )
        expected = compute_mac1(
            session,
            amount=pending.amount,
            terminal_id=pending.terminal_id,
            date=date,
            time=time,
            alg=self.algorithm,
        )
        if expected != mac1:
            return b"", A.SW_BAD_MAC
        self.balance -= pending.amount
        self.offline_atc += 1
        tac = tac_compute(
            self._key(self.keys.tac_master),
            amount=pending.amount,
            terminal_id=pending.terminal_id,
            terminal_seq=seq,
            date=date,
            time=time,
            alg=self.algorithm,
        )
        mac2 = compute_mac2(session, amount=pending.amount, alg=self.algorithm)
        self._last_purchase = _Done(atc_after=self.offline_atc, mac2=mac2, tac=tac)
        record = (
            pending.atc.to_bytes(2, "big")
            + b"\x00\x00\x00"
            + pending.amount.to_bytes(4, "big")
            + b"\x06"
            + pending.terminal_id
            + date
            + time
        )
        self.log.insert(0, record)
        del self.log[LOG_SIZE:]
        return tac + mac2, A.SW_OK

    def _prove(self, kind: int, body: bytes) -> tuple[bytes, int]:
        if kind != 0x06 or len(body) != 2:
            return b"", A.SW_WRONG_P1P2
        done = self._last_purchase
        if done is None or int.from_bytes(body, "big") != done.atc_after:
            return b"", A.SW_NO_SUCH_TRANSACTION
        return done.mac2 + done.tac, A.SW_OK

    def _initialize_load(self, body: bytes) -> tuple[bytes, int]:
        if len(body) != 11:
            return b"", A.SW_WRONG_LENGTH
        amount = int.from_bytes(body[1:5], "big")
        random = secrets.token_bytes(4)
        dlk = self._key(self.keys.load_master)
        session = mac4_session(dlk, random, self.online_atc, self.algorithm)
        mac1 = mac4(
            session,
            self.balance.to_bytes(4, "big") + amount.to_bytes(4, "big") + b"\x02" + body[5:11],
            self.algorithm,
        )
        self._pending = _Pending(
            amount=amount,
            terminal_id=body[5:11],
            random=random,
            atc=self.online_atc,
            kind="load",
            session=session,
        )
        answer = (
            self.balance.to_bytes(4, "big")
            + self.online_atc.to_bytes(2, "big")
            + bytes([self.keys.key_index, int(self.algorithm)])
            + random
            + mac1
        )
        return answer, A.SW_OK

    def _credit_load(self, body: bytes) -> tuple[bytes, int]:
        pending = self._pending
        if pending is None or pending.kind != "load" or pending.session is None:
            return b"", A.SW_CONDITIONS_NOT_SATISFIED
        if len(body) != 11:
            return b"", A.SW_WRONG_LENGTH
        date, time, mac2 = body[0:4], body[4:7], body[7:11]
        self._pending = None
        expected = mac4(
            pending.session,
            pending.amount.to_bytes(4, "big") + b"\x02" + pending.terminal_id + date + time,
            self.algorithm,
        )
        if expected != mac2:
            return b"", A.SW_BAD_MAC
        self.balance += pending.amount
        self.online_atc += 1
        tac = tac_compute(
            self._key(self.keys.tac_master),
            amount=pending.amount,
            terminal_id=pending.terminal_id,
            terminal_seq=self.online_atc,
            date=date,
            time=time,
            alg=self.algorithm,
        )
        return tac, A.SW_OK

    def _application_block(self, body: bytes) -> tuple[bytes, int]:
        challenge, self._challenge = self._challenge, None
        if challenge is None or len(body) != 4:
            return b"", A.SW_CONDITIONS_NOT_SATISFIED
        if body != block_mac(self._key(self.keys.maintenance_master), challenge, self.algorithm):
            return b"", A.SW_BAD_MAC
        self.blocked = True
        return b"", A.SW_OK


def mac4_session(dlk: bytes, random: bytes, online_atc: int, alg: Algorithm) -> bytes:
    """Load session key: E(DLK, random(4) | online ATC(2) | 80 00 (00..)) — the purchase shape with 8000."""
    material = random + online_atc.to_bytes(2, "big")
    size = 16 if alg == Algorithm.SM4 else 8
    return encrypt_block(dlk, pad_iso9797_m2(material, size), alg)


def block_mac(maintenance_key: bytes, challenge: bytes, alg: Algorithm) -> bytes:
    """APPLICATION BLOCK's MAC: over the command header 84 1E 00 00 04, chained from the card's challenge."""
    return mac4(maintenance_key, challenge + b"\x00" * 4 + bytes.fromhex("841E000004"), alg)
