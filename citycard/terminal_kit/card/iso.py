"""ISO/IEC 7816-3/-4 behaviour shared by the project's virtual cards (the citizen card and the PSAM).

``IsoCard.process(command) -> response`` does what every card does before an application sees a command,
in this order, whatever state the card is in:

1. fewer than 4 bytes, an extended length, or an Lc that does not match the bytes sent → ``6700``;
2. the class byte: logical channels → ``6881``, secure messaging on an interindustry class → ``6882``,
   command chaining → ``6884``, any other class the card does not know (``FF`` included) → ``6E00``;
3. the instruction: unknown to the card → ``6D00``; known, but not in this class → ``6E00``;
4. the command's own handler (``INSTRUCTIONS`` maps (CLA, INS) to a method name), which checks P1-P2
   (``6A86``/``6B00``), its Lc and Le (``6700``), then the application's state.

The answer goes back as data + SW, except that a card in T=0 mode (``get_response_style``) answers a
command that sent data (case 3 or 4) and has data to return with ``61xx`` and hands the data over on
GET RESPONSE (``00 C0``); its errors come back directly, as T=0 cards send them. A test can make the
card lose power in the middle of a command (``tear``), before or after it acted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from citycard.terminal_kit.card import apdu as A


class CardTorn(Exception):
    """The card lost power during a command (raised by a test's tear; transports turn it into removal)."""


@dataclass(frozen=True)
class Command:
    """A parsed short-length command APDU: ``le`` is None when the command carries no Le."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes
    le: int | None


def parse_command(raw: bytes) -> Command | None:
    """The command, or None if its length bytes do not add up (cases 1–4 of ISO 7816-3, short lengths)."""
    if len(raw) < 4:
        return None
    cla, ins, p1, p2 = raw[:4]
    if len(raw) == 4:
        return Command(cla, ins, p1, p2, b"", None)
    if len(raw) == 5:
        return Command(cla, ins, p1, p2, b"", raw[4])
    lc = raw[4]
    if lc == 0:  # extended length: not supported
        return None
    rest = raw[5 + lc :]
    if len(raw) < 5 + lc or len(rest) > 1:
        return None
    return Command(cla, ins, p1, p2, raw[5 : 5 + lc], rest[0] if rest else None)


class ApduError(Exception):
    """Raised by a handler to answer a status word and no data."""

    def __init__(self, sw: int) -> None:
        super().__init__(f"{sw:04X}")
        self.sw = sw


def expect(condition: bool, sw: int) -> None:
    if not condition:
        raise ApduError(sw)


class IsoCard:
    """Framing and the class / instruction checks; subclasses declare ``INSTRUCTIONS`` and ``CLASSES``."""

    ATR: ClassVar[bytes]
    CLASSES: ClassVar[frozenset[int]] = frozenset({0x00, 0x80, 0x84})
    INSTRUCTIONS: ClassVar[dict[tuple[int, int], str]] = {(0x00, 0xC0): "_get_response"}

    get_response_style: bool = False  # T=0 mode: 61xx for the data of case-4 commands
    _held_response: bytes | None = None
    _tear: tuple[int, str] | None = None

    @property
    def atr(self) -> bytes:
        return self.ATR

    def tear(self, ins: int, when: str = "after") -> None:
        """Lose power at the next command ``ins``, ``before`` acting on it or ``after`` (answer lost)."""
        if when not in {"before", "after"}:
            raise ValueError("when is 'before' or 'after'")
        self._tear = (ins, when)

    def reset(self) -> None:
        """Power cycle: volatile state is gone (subclasses drop theirs too)."""
        self._held_response = None

    def process(self, raw: bytes) -> bytes:
        ins = raw[1] if len(raw) >= 2 else None
        tear = self._tear
        if tear and tear[0] == ins:
            self._tear = None
            if tear[1] == "before":
                self.reset()
                raise CardTorn(f"power lost before {ins:02X}")
        command = parse_command(raw)
        data, sw = self._answer(command)
        if tear and tear[0] == ins:
            self.reset()
            raise CardTorn(f"power lost after {ins:02X}")
        if self.get_response_style and command is not None and command.data and data:
            self._held_response = data + sw.to_bytes(2, "big")
            return bytes([0x61, len(data) & 0xFF])
        return data + sw.to_bytes(2, "big")

    def _answer(self, command: Command | None) -> tuple[bytes, int]:
        if command is None:
            return b"", A.SW_WRONG_LENGTH
        if command.ins != 0xC0:
            self._held_response = None  # anything but GET RESPONSE drops what was held
        sw = self._class_and_instruction(command)
        if sw is not None:
            return b"", sw
        handler = getattr(self, self.INSTRUCTIONS[(command.cla, command.ins)])
        try:
            return handler(command)
        except ApduError as exc:
            return b"", exc.sw

    def _class_and_instruction(self, c: Command) -> int | None:
        if c.cla not in self.CLASSES:
            if 0x40 <= c.cla <= 0x7F:  # further interindustry classes: logical channels 4 to 19
                return A.SW_LOGICAL_CHANNEL_NOT_SUPPORTED
            if c.cla < 0x20:  # the first interindustry classes, with a channel, SM or chaining bit set
                if c.cla & 0x03:
                    return A.SW_LOGICAL_CHANNEL_NOT_SUPPORTED
                if c.cla & 0x0C:
                    return A.SW_SECURE_MESSAGING_NOT_SUPPORTED
                if c.cla & 0x10:
                    return A.SW_CHAINING_NOT_SUPPORTED
            return A.SW_CLA_NOT_SUPPORTED
        if (c.cla, c.ins) in self.INSTRUCTIONS:
            return None
        if any(ins == c.ins for _, ins in self.INSTRUCTIONS):
            return A.SW_CLA_NOT_SUPPORTED
        return A.SW_INS_NOT_SUPPORTED

    def _get_response(self, c: Command) -> tuple[bytes, int]:
        expect(c.p1 == 0 and c.p2 == 0, A.SW_WRONG_P1P2)
        held, self._held_response = self._held_response, None
        expect(held is not None, A.SW_CONDITIONS_NOT_SATISFIED)
        data, sw = held[:-2], int.from_bytes(held[-2:], "big")
        le = c.le or 256
        if le < len(data):  # the rest stays for the next GET RESPONSE
            self._held_response = data[le:] + held[-2:]
            return data[:le], 0x6100 | min(len(data) - le, 0xFF)
        return data, sw


def atr_contactless(historical: bytes) -> bytes:
    """The ATR a PC/SC reader builds for an ISO 14443-4 card from its ATS (PC/SC part 3, 3.1.3.2.3.1):
    ``3B 8n 80 01`` + the n historical bytes + TCK (XOR of T0 to the last historical byte)."""
    if not 0 < len(historical) <= 15:
        raise ValueError("an ATS carries 1 to 15 historical bytes")
    body = bytes([0x80 | len(historical), 0x80, 0x01]) + historical
    tck = 0
    for byte in body:
        tck ^= byte
    return b"\x3b" + body + bytes([tck])


@dataclass(frozen=True)
class Atr:
    """An ATR taken apart (ISO 7816-3 §8.2): what the conformance tests check."""

    protocols: tuple[int, ...]
    historical: bytes
    tck_ok: bool | None  # None: no TCK (T=0 only)


def atr_parse(atr: bytes) -> Atr:
    if len(atr) < 2 or atr[0] not in (0x3B, 0x3F):
        raise ValueError("an ATR starts with TS 3B or 3F")
    t0 = atr[1]
    k, y, i, protocols = t0 & 0x0F, t0 >> 4, 2, []
    while True:
        i += bin(y & 0x07).count("1")  # TA, TB, TC
        if not y & 0x08:
            break
        if i >= len(atr):
            raise ValueError("the ATR ends inside its interface bytes")
        td = atr[i]
        protocols.append(td & 0x0F)
        y, i = td >> 4, i + 1
    historical = atr[i : i + k]
    if len(historical) != k:
        raise ValueError("the ATR ends inside its historical bytes")
    rest = atr[i + k :]
    if not protocols or protocols == [0]:
        if rest:
            raise ValueError("a T=0-only ATR has no TCK")
        return Atr((0,), historical, None)
    if len(rest) != 1:
        raise ValueError("the ATR must end with exactly one TCK")
    check = 0
    for byte in atr[1:]:
        check ^= byte
    return Atr(tuple(dict.fromkeys(protocols)), historical, check == 0)
