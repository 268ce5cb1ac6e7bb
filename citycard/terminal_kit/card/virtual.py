"""The project's own virtual citizen card (虚拟市民卡): an e-purse application answering APDUs.

``VirtualCard.process(apdu) -> response`` is the whole card; it runs in-process for unit tests
(``citycard.terminal_kit.reader.InProcessReader``) or behind pcscd through the vpcd driver
(``citycard.terminal_kit.card.vpcd.VpcdCard``). Files, layouts and status words are in
docs/terminal-protocol.md; the ISO 7816 framing (class and instruction checks, T=0, power loss) is
``citycard.terminal_kit.card.iso``.

What a card vendor would check: it answers as an ISO 14443-4 card (its ATR is the one a PC/SC reader
builds from its ATS); the composite purchase writes the transit record and the debit in one atomic step;
each of its keys has a try counter — ``MAC_TRY_LIMIT`` wrong MACs in a row (MAC1, a load's MAC2, the
block MAC) lock the application for good (``9303``).
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
from citycard.terminal_kit.card.iso import ApduError, CardTorn, Command, IsoCard, atr_contactless, expect
from citycard.terminal_kit.cardno import card_number_bcd

__all__ = ["ATR", "CardProfile", "CardTorn", "IssuerKeys", "VirtualCard", "block_mac"]

CATEGORY_BITS = {"elderly": 0x01, "student": 0x02, "disabled": 0x04, "veteran": 0x08, "low_income": 0x10}
# Transit passes loaded on the card (management file byte 2), e.g. the bus monthly pass (公交月票).
PASS_BITS = {"monthly": 0x01}
# The ATS's historical bytes (ISO 7816-4 §8.1.1): category 80, then COMPACT-TLV: card service data
# (31 C0: selection by full and partial DF name), the application identifier (F8 + the T-Union AID),
# status indicator (82 90 00).
HISTORICAL_BYTES = bytes.fromhex("8031C0F8") + A.AID_TUNION + bytes.fromhex("829000")
ATR = atr_contactless(HISTORICAL_BYTES)
LOG_SIZE = 10
MAC_TRY_LIMIT = 3
# The transit record as personalised: record id, length, format 01, no journey, no counters.
EMPTY_TRANSIT = bytes([A.TRANSIT_RECORD_ID, A.TRANSIT_RECORD_SIZE - 2, 0x01]) + bytes(
    A.TRANSIT_RECORD_SIZE - 3
)


@dataclass(frozen=True)
class IssuerKeys:
    """Master keys a card's keys are diversified from: purchase (the issuer's, held by terminals' PSAMs),
    TAC and load (the issuer's, never in a terminal), maintenance (held by PSAMs for APPLICATION BLOCK)."""

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
    kind: str  # "purchase" | "composite" | "load"
    session: bytes | None = None
    capp: bytes | None = None  # the transit record UPDATE CAPP DATA CACHE put in the cache


@dataclass
class _Done:
    atc_after: int
    kind: int  # 06 / 09
    mac2: bytes
    tac: bytes


@dataclass
class VirtualCard(IsoCard):
    profile: CardProfile
    keys: IssuerKeys
    balance: int = 0
    offline_atc: int = 0
    online_atc: int = 0
    blocked: bool = False
    locked: bool = False  # a key's try counter ran out: the application is permanently locked
    get_response_style: bool = False  # answer case-4 commands with 61xx, as T=0 cards do
    log: list[bytes] = field(default_factory=list)
    transit: bytes = EMPTY_TRANSIT
    mac_failures: dict[str, int] = field(default_factory=dict)
    _selected: bool = False
    _pending: _Pending | None = None
    _last_purchase: _Done | None = None
    _challenge: bytes | None = None
    _held_response: bytes | None = None
    _tear: tuple[int, str] | None = None

    ATR = ATR
    INSTRUCTIONS = {
        **IsoCard.INSTRUCTIONS,
        (0x00, 0xA4): "_select",
        (0x00, 0xB0): "_read_binary",
        (0x00, 0xB2): "_read_record",
        (0x00, 0x84): "_get_challenge",
        (0x84, 0x1E): "_application_block",
        (0x80, 0x5C): "_get_balance",
        (0x80, 0x50): "_initialize",
        (0x80, 0xDC): "_update_capp_data_cache",
        (0x80, 0x54): "_debit",
        (0x80, 0x5A): "_prove",
        (0x80, 0x52): "_credit_load",
    }

    # --- keys of this card -----------------------------------------------------------------------

    @property
    def algorithm(self) -> Algorithm:
        return self.keys.algorithm

    def _key(self, master: bytes) -> bytes:
        return diversify(master, self.profile.card_no, self.algorithm)

    def _mac_checked(self, key: str, good: bool) -> None:
        """Count a wrong MAC against ``key``'s try counter (reset by a right one); the last try locks."""
        if good:
            self.mac_failures.pop(key, None)
            return
        self.mac_failures[key] = self.mac_failures.get(key, 0) + 1
        if self.mac_failures[key] >= MAC_TRY_LIMIT:
            self.locked = True
            self._selected = False
        raise ApduError(A.SW_BAD_MAC)

    def _answer(self, command: Command | None) -> tuple[bytes, int]:
        if command is None or command.ins not in (0x84, 0x1E, 0xC0):
            self._challenge = None  # a challenge is good for the next command only
        return super()._answer(command)

    # --- power -------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Power cycle: volatile state is gone; the balance, counters, log and transit record stay."""
        super().reset()
        self._selected = False
        self._pending = None
        self._challenge = None

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

    def _records(self, sfi: int) -> list[bytes] | None:
        if sfi == A.SFI_LOG:
            return self.log
        if sfi == A.SFI_TRANSIT:
            return [self.transit]
        return None

    # --- commands ------------------------------------------------------------------------------------

    def _need_application(self) -> None:
        expect(self._selected, A.SW_CONDITIONS_NOT_SATISFIED)

    def _select(self, c: Command) -> tuple[bytes, int]:
        expect(c.p1 == 0x04 and c.p2 in (0x00, 0x0C), A.SW_WRONG_P1P2)
        expect(0 < len(c.data) <= 16, A.SW_WRONG_LENGTH)
        self._selected = False
        self._pending = None
        if not (len(c.data) >= 5 and A.AID_TUNION.startswith(c.data)):  # full or partial DF name
            raise ApduError(A.SW_FILE_NOT_FOUND)
        if self.locked:
            raise ApduError(A.SW_APPLICATION_LOCKED)
        self._selected = True
        fci = b"\x6f" + bytes([len(A.AID_TUNION) + 2]) + b"\x84" + bytes([len(A.AID_TUNION)]) + A.AID_TUNION
        return (b"" if c.p2 == 0x0C else fci), (A.SW_FILE_INVALIDATED if self.blocked else A.SW_OK)

    def _read_binary(self, c: Command) -> tuple[bytes, int]:
        expect(not c.data, A.SW_WRONG_LENGTH)
        expect(bool(c.p1 & 0x80), A.SW_NO_CURRENT_EF)  # only SFI addressing: there is no current EF
        expect(c.p1 & 0x60 == 0, A.SW_WRONG_P1P2)
        self._need_application()
        sfi = c.p1 & 0x1F
        content = self._file(sfi)
        if content is None:
            expect(self._records(sfi) is None, A.SW_INCOMPATIBLE_FILE)
            raise ApduError(A.SW_FILE_NOT_FOUND)
        available = len(content) - c.p2
        expect(available > 0, A.SW_WRONG_OFFSET)
        le = c.le or 0
        if le > available:
            return b"", 0x6C00 | available  # wrong Le: resend with the exact length
        return content[c.p2 : c.p2 + (le or available)], A.SW_OK

    def _read_record(self, c: Command) -> tuple[bytes, int]:
        expect(not c.data, A.SW_WRONG_LENGTH)
        expect(c.p2 & 0x07 == 0x04, A.SW_WRONG_P1P2)  # record number in P1
        expect(c.p2 >> 3 != 0, A.SW_NO_CURRENT_EF)
        self._need_application()
        sfi = c.p2 >> 3
        records = self._records(sfi)
        if records is None:
            expect(self._file(sfi) is None, A.SW_INCOMPATIBLE_FILE)
            raise ApduError(A.SW_FILE_NOT_FOUND)
        expect(1 <= c.p1 <= len(records), A.SW_RECORD_NOT_FOUND)
        entry = records[c.p1 - 1]
        if c.le and c.le != len(entry):
            return b"", 0x6C00 | len(entry)
        return entry, A.SW_OK

    def _get_challenge(self, c: Command) -> tuple[bytes, int]:
        expect(c.p1 == 0 and c.p2 == 0, A.SW_WRONG_P1P2)
        expect(not c.data and c.le in (4, 8), A.SW_WRONG_LENGTH)
        self._challenge = secrets.token_bytes(c.le)
        return self._challenge, A.SW_OK

    def _get_balance(self, c: Command) -> tuple[bytes, int]:
        expect(c.p1 == 0x00 and c.p2 == 0x02, A.SW_WRONG_P1P2)  # 02 e-purse (no e-deposit, 01, here)
        expect(not c.data, A.SW_WRONG_LENGTH)
        self._need_application()
        if c.le not in (None, 0, 4):
            return b"", 0x6C04
        return self.balance.to_bytes(4, "big"), A.SW_OK

    def _initialize(self, c: Command) -> tuple[bytes, int]:
        expect(c.p1 in (0x00, 0x01, 0x03) and c.p2 == 0x02, A.SW_WRONG_P1P2)
        expect(len(c.data) == 11, A.SW_WRONG_LENGTH)
        self._need_application()
        self._pending = None
        expect(not self.blocked, A.SW_CONDITIONS_NOT_SATISFIED)
        expect(c.data[0] == self.keys.key_index, A.SW_KEY_INDEX_NOT_SUPPORTED)
        if c.p1 == 0x00:
            return self._initialize_load(c.data)
        amount = int.from_bytes(c.data[1:5], "big")
        expect(amount <= self.balance, A.SW_INSUFFICIENT_BALANCE)
        random = secrets.token_bytes(4)
        kind = "composite" if c.p1 == 0x03 else "purchase"
        self._pending = _Pending(
            amount=amount, terminal_id=c.data[5:11], random=random, atc=self.offline_atc, kind=kind
        )
        answer = (
            self.balance.to_bytes(4, "big")
            + self.offline_atc.to_bytes(2, "big")
            + b"\x00\x00\x00"
            + bytes([self.keys.key_index, int(self.algorithm)])
            + random
        )
        return answer, A.SW_OK

    def _update_capp_data_cache(self, c: Command) -> tuple[bytes, int]:
        expect(c.p2 & 0x07 == 0 and c.p2 >> 3 == A.SFI_TRANSIT, A.SW_WRONG_P1P2)
        expect(c.p1 == A.TRANSIT_RECORD_ID, A.SW_RECORD_NOT_FOUND)
        expect(len(c.data) == A.TRANSIT_RECORD_SIZE, A.SW_WRONG_LENGTH)
        self._need_application()
        pending = self._pending
        # Only inside a composite purchase: the record is written with its debit or not at all.
        expect(pending is not None and pending.kind == "composite", A.SW_CONDITIONS_NOT_SATISFIED)
        expect(c.data[0] == A.TRANSIT_RECORD_ID and c.data[1] == len(c.data) - 2, A.SW_WRONG_DATA)
        pending.capp = c.data
        return b"", A.SW_OK

    def _debit(self, c: Command) -> tuple[bytes, int]:
        expect(c.p1 == 0x01 and c.p2 == 0x00, A.SW_WRONG_P1P2)
        expect(len(c.data) == 15, A.SW_WRONG_LENGTH)
        self._need_application()
        pending, self._pending = self._pending, None
        expect(
            pending is not None and pending.kind in ("purchase", "composite"), A.SW_CONDITIONS_NOT_SATISFIED
        )
        body = c.data
        seq, date, time, mac1 = int.from_bytes(body[0:4], "big"), body[4:8], body[8:11], body[11:15]
        kind = A.COMPOSITE if pending.kind == "composite" else A.PURCHASE
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
            kind=kind,
        )
        self._mac_checked("purchase", expected == mac1)
        # From here on, one atomic write: balance, counter, log and (composite) transit record.
        self.balance -= pending.amount
        self.offline_atc += 1
        if pending.capp is not None:
            self.transit = pending.capp
        tac = tac_compute(
            self._key(self.keys.tac_master),
            amount=pending.amount,
            terminal_id=pending.terminal_id,
            terminal_seq=seq,
            date=date,
            time=time,
            alg=self.algorithm,
            kind=kind,
        )
        mac2 = compute_mac2(session, amount=pending.amount, alg=self.algorithm)
        self._last_purchase = _Done(atc_after=self.offline_atc, kind=kind, mac2=mac2, tac=tac)
        record = (
            pending.atc.to_bytes(2, "big")
            + b"\x00\x00\x00"
            + pending.amount.to_bytes(4, "big")
            + bytes([kind])
            + pending.terminal_id
            + date
            + time
        )
        self.log.insert(0, record)
        del self.log[LOG_SIZE:]
        return tac + mac2, A.SW_OK

    def _prove(self, c: Command) -> tuple[bytes, int]:
        expect(c.p1 == 0x00 and c.p2 in (A.PURCHASE, A.COMPOSITE), A.SW_WRONG_P1P2)
        expect(len(c.data) == 2, A.SW_WRONG_LENGTH)
        self._need_application()
        done = self._last_purchase
        if done is None or done.kind != c.p2 or int.from_bytes(c.data, "big") != done.atc_after:
            raise ApduError(A.SW_NO_SUCH_TRANSACTION)
        return done.mac2 + done.tac, A.SW_OK

    def _initialize_load(self, body: bytes) -> tuple[bytes, int]:
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

    def _credit_load(self, c: Command) -> tuple[bytes, int]:
        expect(c.p1 == 0x00 and c.p2 == 0x00, A.SW_WRONG_P1P2)
        expect(len(c.data) == 11, A.SW_WRONG_LENGTH)
        self._need_application()
        pending, self._pending = self._pending, None
        expect(
            pending is not None and pending.kind == "load" and pending.session is not None,
            A.SW_CONDITIONS_NOT_SATISFIED,
        )
        date, time, mac2 = c.data[0:4], c.data[4:7], c.data[7:11]
        expected = mac4(
            pending.session,
            pending.amount.to_bytes(4, "big") + b"\x02" + pending.terminal_id + date + time,
            self.algorithm,
        )
        self._mac_checked("load", expected == mac2)
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

    def _application_block(self, c: Command) -> tuple[bytes, int]:
        expect(c.p1 == 0x00 and c.p2 == 0x00, A.SW_WRONG_P1P2)
        expect(len(c.data) == 4 and c.le is None, A.SW_WRONG_LENGTH)
        self._need_application()
        challenge, self._challenge = self._challenge, None
        expect(challenge is not None, A.SW_CONDITIONS_NOT_SATISFIED)
        mac = block_mac(self._key(self.keys.maintenance_master), challenge[:4], self.algorithm)
        self._mac_checked("maintenance", c.data == mac)
        self.blocked = True
        return b"", A.SW_OK


def mac4_session(dlk: bytes, random: bytes, online_atc: int, alg: Algorithm) -> bytes:
    """Load session key: E(DLK, random(4) | online ATC(2) | 80 00 (00..)) — the purchase shape with 8000."""
    material = random + online_atc.to_bytes(2, "big")
    size = 16 if alg == Algorithm.SM4 else 8
    return encrypt_block(dlk, pad_iso9797_m2(material, size), alg)


BLOCK_HEADER = bytes.fromhex("841E000004")


def block_mac_data(challenge: bytes) -> bytes:
    """What APPLICATION BLOCK's MAC covers: the card's challenge, four zero bytes, the command header."""
    return challenge + b"\x00" * 4 + BLOCK_HEADER


def block_mac(maintenance_key: bytes, challenge: bytes, alg: Algorithm) -> bytes:
    """APPLICATION BLOCK's MAC: over the command header 84 1E 00 00 04, chained from the card's challenge."""
    return mac4(maintenance_key, block_mac_data(challenge), alg)
