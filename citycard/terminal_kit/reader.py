"""The reader layer (读卡器): a thin transport for APDUs, as small as Eclipse Keyple's reader SPI.

``Transport`` is what a tap needs: open, close, card present, ATR, transmit. ``PcscReader`` drives a real
PC/SC reader through pyscard (and pcscd); ``InProcessReader`` holds a virtual card (citizen card or PSAM)
for fast tests.
``CardChannel`` sits on top and does what pyscard does not: GET RESPONSE on ``61xx`` and a resend with the
right Le on ``6Cxx``. Failures map to distinct exceptions so the tap logic can tell "pcscd is not running"
from "the reader is gone" from "the card was pulled in the middle of a command".
"""

from __future__ import annotations

import contextlib
import time
from typing import Protocol

from citycard.terminal_kit.card import apdu as A
from citycard.terminal_kit.card.iso import CardTorn, IsoCard
from citycard.terminal_kit.i18n import N_, said, text_of


class ReaderError(Exception):
    """Base of every reader-layer failure."""


class PcscUnavailable(ReaderError):
    """No PC/SC service (pcscd is not running or pyscard is not installed)."""


class ReaderNotFound(ReaderError):
    """The named reader is not connected (or was unplugged)."""


class NoCard(ReaderError):
    """No card in the field."""


class CardRemoved(ReaderError):
    """The card left the field during a command: its effect is unknown."""


class CardReset(CardRemoved):
    """The card was reset under the connection (by the reader or another application): the command was not
    delivered, and the card's volatile state (selection, sessions) is gone."""


SCARD_W_RESET_CARD = 0x80100068


class Transport(Protocol):
    def open(self) -> None: ...
    def close(self) -> None: ...
    def card_present(self) -> bool: ...
    def atr(self) -> bytes: ...
    def transmit(self, command: bytes) -> bytes: ...


class InProcessReader:
    """A reader with a virtual card in it, in this process (no pcscd)."""

    def __init__(self, card: IsoCard | None = None) -> None:
        self.card = card
        self._connected = False

    def insert(self, card: IsoCard) -> None:
        self.card = card
        self._connected = False

    def remove(self) -> None:
        if self.card is not None:
            self.card.reset()
        self.card = None
        self._connected = False

    def open(self) -> None:
        if self.card is None:
            raise NoCard(said(N_("no card in the in-process reader")))
        self.card.reset()
        self._connected = True

    def close(self) -> None:
        self._connected = False

    def card_present(self) -> bool:
        return self.card is not None

    def atr(self) -> bytes:
        if self.card is None:
            raise NoCard(said(N_("no card in the in-process reader")))
        return self.card.atr

    def transmit(self, command: bytes) -> bytes:
        if self.card is None or not self._connected:
            raise NoCard(said(N_("no card connected")))
        try:
            return self.card.process(bytes(command))
        except CardTorn as exc:
            self.card = None
            self._connected = False
            raise CardRemoved(text_of(exc)) from exc


class PcscReader:
    """A PC/SC reader through pyscard (``pip install citycard-interop[terminal]``)."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name
        self._connection = None

    def _reader(self):
        try:
            from smartcard.Exceptions import ListReadersException, SmartcardException
            from smartcard.pcsc.PCSCExceptions import BaseSCardException
            from smartcard.System import readers
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise PcscUnavailable(
                said(N_("pyscard is not installed (pip install 'citycard-interop[terminal]')"))
            ) from exc
        try:
            found = readers()
        except (BaseSCardException, ListReadersException, SmartcardException) as exc:
            raise PcscUnavailable(
                said(N_("PC/SC service not available (is pcscd running?): %(exc)s"), exc=exc)
            ) from exc
        for reader in found:
            if self.name is None or str(reader) == self.name or str(reader).startswith(self.name):
                return reader
        names = ", ".join(str(r) for r in found) or "none"
        raise ReaderNotFound(
            said(N_("reader %(name)r not found (readers: %(names)s)"), name=self.name, names=names)
        )

    def open(self) -> None:
        from smartcard.Exceptions import CardConnectionException, NoCardException

        connection = self._reader().createConnection()
        try:
            connection.connect()
        except NoCardException as exc:
            raise NoCard(said(N_("no card on %(name)s"), name=self.name)) from exc
        except CardConnectionException as exc:
            raise NoCard(
                said(N_("cannot connect to the card on %(name)s: %(exc)s"), name=self.name, exc=exc)
            ) from exc
        self._connection = connection

    def close(self) -> None:
        if self._connection is not None:
            # The card may already be gone; closing must not fail.
            with contextlib.suppress(Exception):
                self._connection.disconnect()
            self._connection = None

    def card_present(self) -> bool:
        from smartcard.Exceptions import CardConnectionException, NoCardException

        try:
            connection = self._reader().createConnection()
            connection.connect()
            connection.disconnect()
            return True
        except (NoCardException, CardConnectionException):
            return False

    def atr(self) -> bytes:
        if self._connection is None:
            raise NoCard(said(N_("not connected")))
        return bytes(self._connection.getATR())

    def transmit(self, command: bytes) -> bytes:
        from smartcard.Exceptions import CardConnectionException

        if self._connection is None:
            raise NoCard(said(N_("not connected")))
        try:
            data, sw1, sw2 = self._connection.transmit(list(command))
        except CardConnectionException as exc:
            self.close()
            if getattr(exc, "hresult", -1) & 0xFFFFFFFF == SCARD_W_RESET_CARD:
                raise CardReset(said(N_("card reset under the connection: %(exc)s"), exc=exc)) from exc
            raise CardRemoved(said(N_("card removed during the command: %(exc)s"), exc=exc)) from exc
        return bytes(data) + bytes([sw1, sw2])


def wait_for_card(transport: Transport, *, timeout: float, poll: float = 0.05) -> bool:
    """Poll until a card is in the field (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if transport.card_present():
            return True
        time.sleep(poll)
    return transport.card_present()


class CardChannel:
    """APDU exchange with ``61xx`` / ``6Cxx`` handled, over any transport."""

    MAX_CHAINED = 8

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def send(self, command: bytes) -> A.Response:
        raw = self.transport.transmit(command)
        for _ in range(self.MAX_CHAINED):
            if len(raw) < 2:
                raise CardRemoved(
                    said(N_("malformed response %(hex)s (fewer than two status bytes)"), hex=raw.hex())
                )
            sw1, sw2 = raw[-2], raw[-1]
            if sw1 == 0x6C:  # wrong Le: the card tells the right one
                raw = self.transport.transmit(_with_le(command, sw2))
                continue
            if sw1 == 0x61:  # more data: fetch it
                data = raw[:-2]
                raw = self.transport.transmit(A.get_response(sw2))
                if data:
                    raw = data + raw
                continue
            return A.Response.parse(raw)
        raise CardRemoved(said(N_("the card kept answering 61xx/6Cxx")))


def _with_le(command: bytes, le: int) -> bytes:
    """The same command with its Le set to ``le`` (cases 2, 3 and 4 of ISO 7816-3)."""
    if len(command) <= 5:
        return command[:4] + bytes([le])
    lc = command[4]
    return command[: 5 + lc] + bytes([le])
