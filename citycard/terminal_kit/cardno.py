"""Citizen-card numbers (卡号): issuer division code + scheme code + serial + Luhn check digit.

``DDDDDD SS NNNNNNNNNN C`` — 19 digits: the issuing tenant's 6-digit GB/T 2260 division code (so any
acquirer routes a foreign card without a lookup), the 2-digit card-scheme code, a 10-digit serial and a
Luhn check digit over the first 18.
"""

from __future__ import annotations

from dataclasses import dataclass

from citycard.terminal_kit.i18n import N_, said

CARD_NUMBER_LENGTH = 19
_LUHN_DOUBLE = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


class CardNumberError(ValueError):
    """A card number of the wrong shape (``code`` "invalid") or with a wrong check digit ("bad_checksum")."""

    def __init__(self, message: str, *, code: str = "invalid") -> None:
        super().__init__(message)
        self.code = code


def luhn_check_digit(body: str) -> str:
    """The digit that makes ``body + digit`` pass the Luhn check."""
    digits = [ord(c) - 48 for c in body]
    total = sum(_LUHN_DOUBLE[d] for d in digits[-1::-2]) + sum(digits[-2::-2])
    return str((10 - total % 10) % 10)


_LUHN_DOUBLED = str.maketrans("0123456789", "0246813579")  # each digit doubled, digits of the result summed


def luhn_valid(number: str) -> bool:
    """Whether ``number`` is ASCII digits ending in their Luhn check digit. Every second digit from the
    right is doubled through a translation table and the digits summed over the bytes, in C: ingestion
    checks every tap's card number with it."""
    if not (number.isascii() and number.isdigit()):
        return False
    digits = (number[-1::-2] + number[-2::-2].translate(_LUHN_DOUBLED)).encode()
    return (sum(digits) - 48 * len(digits)) % 10 == 0


@dataclass(frozen=True)
class CardNumber:
    division: str
    scheme: str
    serial: int

    @property
    def number(self) -> str:
        return card_number_build(division=self.division, scheme=self.scheme, serial=self.serial)


def card_number_build(*, division: str, scheme: str, serial: int) -> str:
    if len(division) != 6 or not division.isdigit():
        raise CardNumberError(said(N_("division code %(division)r must be 6 digits"), division=division))
    if len(scheme) != 2 or not scheme.isdigit():
        raise CardNumberError(said(N_("scheme code %(scheme)r must be 2 digits"), scheme=scheme))
    if not 0 <= serial < 10**10:
        raise CardNumberError(said(N_("serial %(serial)s must be 0..9999999999"), serial=serial))
    body = f"{division}{scheme}{serial:010d}"
    return body + luhn_check_digit(body)


def card_number_parse(number: str) -> CardNumber:
    """Split a card number into its parts; CardNumberError names what is wrong."""
    if not isinstance(number, str) or len(number) != CARD_NUMBER_LENGTH or not number.isdigit():
        raise CardNumberError(
            said(
                N_("card number %(number)r must be %(length)s digits"),
                number=number,
                length=CARD_NUMBER_LENGTH,
            )
        )
    if not luhn_valid(number):
        raise CardNumberError(
            said(N_("card number %(number)s fails its Luhn check digit"), number=number), code="bad_checksum"
        )
    return CardNumber(division=number[:6], scheme=number[6:8], serial=int(number[8:18]))


def card_number_clean(value: object) -> str:
    """The one check of a card number given by a person or a partner app: surrounding spaces dropped, then
    exactly 19 ASCII digits ending in their Luhn check digit (``card_number_parse``). Returns the number;
    CardNumberError (code ``invalid``, or ``bad_checksum`` for a wrong check digit) says what is wrong."""
    number = value.strip() if isinstance(value, str) else value
    try:
        if not (isinstance(number, str) and number.isascii()):
            raise CardNumberError(said(N_("not ASCII digits")))
        card_number_parse(number)
    except CardNumberError as exc:
        raise CardNumberError(
            said(
                N_("%(value)r is not a card number (%(length)s digits ending in a valid Luhn check digit)"),
                value=value,
                length=CARD_NUMBER_LENGTH,
            ),
            code=exc.code,
        ) from exc
    return number


def card_number_bcd(number: str) -> bytes:
    """The 10-byte BCD form stored on the card (SFI 0x15 bytes 10–19), padded with F."""
    return bytes.fromhex(number.ljust(20, "F"))


def card_number_from_bcd(raw: bytes) -> str:
    return raw.hex().upper().rstrip("F").lower()
