"""The terminal's side of its PSAM (安全存取模块): MAC1, the MAC2 check and the block MAC, asked in APDUs.

``Psam`` speaks to a PSAM card in a reader of its own — ``PcscReader("Virtual PCD 00 01")`` in service,
or an ``InProcessReader`` holding a ``VirtualPsam`` for fast tests; the same APDUs either way. The terminal
software holds no key: the PSAM diversifies its issuers' master keys itself, counts the terminal
transaction serial, and MACs over its own terminal number. Keys reach a PSAM only through the audited
provisioning step (``citycard.terminal_kit.provision``).
"""

from __future__ import annotations

from dataclasses import dataclass

from citycard.terminal_kit.card import apdu as A
from citycard.terminal_kit.card.crypto import Algorithm
from citycard.terminal_kit.card.virtual import block_mac_data
from citycard.terminal_kit.i18n import N_, said
from citycard.terminal_kit.reader import CardChannel, CardReset, ReaderError, Transport


class SamError(ReaderError):
    """The PSAM refused or is missing: no purchase can be authorised."""


@dataclass(frozen=True)
class PurchaseAuth:
    terminal_seq: int  # the PSAM's terminal transaction serial for this purchase
    mac1: bytes


class Psam:
    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._channel = CardChannel(transport)
        self._open = False
        self._terminal_id: bytes | None = None
        self.serial: bytes | None = None

    # --- connection ---------------------------------------------------------------------------------

    def open(self) -> None:
        """Connect, read the PSAM serial and terminal number, select the e-purse application."""
        try:
            self.transport.open()
            self._open = True
            self.serial = self._data(A.read_binary(A.SFI_PSAM_SERIAL, 10), "READ BINARY 0015", 10)
            self._terminal_id = self._data(A.read_binary(A.SFI_PSAM_TERMINAL, 6), "READ BINARY 0016", 6)
            self._data(A.select_file(A.PSAM_DF), "SELECT 1001")
        except SamError:
            self.close()
            raise
        except ReaderError as exc:
            self.close()
            raise SamError(said(N_("PSAM: %(exc)s"), exc=exc)) from exc

    def close(self) -> None:
        self._open = False
        self._terminal_id = None
        self.transport.close()

    @property
    def terminal_id(self) -> bytes:
        """The terminal number (6 bytes) the PSAM MACs over; the PSAM is opened on first use."""
        if self._terminal_id is None:
            self.open()
        assert self._terminal_id is not None
        return self._terminal_id

    def _send(self, command: bytes, *, again: bool = True) -> A.Response:
        if not self._open:
            self.open()
        try:
            return self._channel.send(command)
        except CardReset:
            # The PSAM was reset (power glitch, the reader's recovery): the command never reached it and
            # its session is gone. Open it again and send the command once more; a MAC2 check then finds
            # no session and fails, so the tap is treated as torn.
            self.close()
            if again:
                return self._send(command, again=False)
            raise SamError(said(N_("PSAM: reset twice in a row"))) from None
        except ReaderError as exc:
            self.close()  # reopened on the next use
            raise SamError(said(N_("PSAM: %(exc)s"), exc=exc)) from exc

    def _data(self, command: bytes, what: str, length: int | None = None) -> bytes:
        response = self._send(command)
        if not response.ok:
            raise SamError(said(N_("PSAM %(what)s: %(describe)s"), what=what, describe=response.describe()))
        if length is not None and len(response.data) != length:
            raise SamError(
                said(
                    N_("PSAM %(what)s: %(data)s bytes instead of %(length)s"),
                    what=what,
                    data=len(response.data),
                    length=length,
                )
            )
        return response.data

    # --- purchase -----------------------------------------------------------------------------------

    def purchase(
        self,
        *,
        card_serial: bytes,
        issuer_id: bytes,
        key_version: int,
        algorithm: Algorithm,
        random: bytes,
        atc: int,
        amount: int,
        kind: int,
        date: bytes,
        time: bytes,
    ) -> PurchaseAuth:
        """INIT SAM FOR PURCHASE: the terminal serial and MAC1 for the card's DEBIT."""
        command = A.init_sam_for_purchase(
            random=random,
            atc=atc,
            amount=amount,
            kind=kind,
            date=date,
            time=time,
            key_version=key_version,
            algorithm=int(algorithm),
            card_serial=card_serial,
            issuer_id=issuer_id,
        )
        response = self._send(command)
        if response.sw == A.SW_DATA_NOT_FOUND:
            raise SamError(
                said(
                    N_(
                        "the PSAM holds no purchase key for issuer %(issuer)s (key version %(version)s,"
                        " algorithm %(algorithm)s)"
                    ),
                    issuer=issuer_id[:3].hex(),
                    version=key_version,
                    algorithm=f"{int(algorithm):02X}",
                )
            )
        if not response.ok or len(response.data) != 8:
            raise SamError(said(N_("PSAM INIT SAM FOR PURCHASE: %(describe)s"), describe=response.describe()))
        return PurchaseAuth(int.from_bytes(response.data[0:4], "big"), response.data[4:8])

    def mac2_valid(self, mac2: bytes) -> bool:
        """CREDIT SAM FOR PURCHASE: whether the card's MAC2 proves the debit MAC1 was computed for."""
        return self._send(A.credit_sam_for_purchase(mac2)).ok

    # --- maintenance --------------------------------------------------------------------------------

    def block_mac(
        self,
        *,
        card_serial: bytes,
        issuer_id: bytes,
        key_version: int,
        algorithm: Algorithm,
        challenge: bytes,
    ) -> bytes:
        """The MAC of APPLICATION BLOCK for the card that gave ``challenge``."""
        self._data(
            A.init_for_descrypt(
                usage=A.KEY_MAINTENANCE,
                key_version=key_version,
                algorithm=int(algorithm),
                card_serial=card_serial,
                issuer_id=issuer_id,
            ),
            "INIT FOR DESCRYPT",
        )
        return self._data(A.descrypt_mac(block_mac_data(challenge)), "DES CRYPT (MAC)", 4)
