"""Card keys, session keys, MAC1 / MAC2 / TAC (SM4, or 3DES when the card's algorithm id says so).

All primitives come from ``cryptography``; this module only arranges them as the PBOC e-purse does. The
exact derivations (with test vectors) are in docs/terminal-protocol.md:

- Card keys are diversified from master keys by card number: ``D = E(master, L) || E(master, ~L)`` for
  3DES (8-byte halves) and ``D = E(master, L || ~L)`` for SM4, where L is the last 8 bytes of the card
  number's BCD form and ~L its bitwise complement.
- Purchase session key: 3DES ``E(DPK, random(4) | ATC(2) | seq[2:4])``; SM4 ``E(DPK, random | ATC |
  seq[2:4] | 80 00 .. 00)``.
- MAC: ISO 9797-1 method 2 padding (80 then zeros to the block size), CBC with a zero IV, the first
  4 bytes of the last block. MAC1 over amount(4) | type(1) | terminal id(6) | date(4) | time(3) with the
  session key; MAC2 over amount(4) with the session key.
- TAC: 3DES with ``DTK[:8] XOR DTK[8:]`` (single DES, as the standard says); SM4 with the 16-byte DTK.
  Over amount(4) | type(1) | terminal id(6) | terminal seq(4) | date(4) | time(3).
"""

from __future__ import annotations

import hmac
from enum import IntEnum
from functools import lru_cache

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from citycard.terminal_kit.cardno import card_number_bcd

PURCHASE = 0x06  # transaction type of a purchase; 09 for the composite (CAPP) purchase
COMPOSITE = 0x09


class Algorithm(IntEnum):
    """The card's algorithm id (INITIALIZE FOR PURCHASE response byte 11)."""

    TRIPLE_DES = 0x00
    SM4 = 0x04


def _block_cipher(key: bytes, alg: Algorithm):
    if alg == Algorithm.SM4:
        if len(key) != 16:
            raise ValueError("SM4 keys are 16 bytes")
        return algorithms.SM4(key), 16
    if len(key) == 16:
        key = key + key[:8]  # two-key 3DES as K1 K2 K1
    elif len(key) == 8:
        key = key * 3  # single DES (the TAC key)
    if len(key) != 24:
        raise ValueError("3DES keys are 8, 16 or 24 bytes")
    return TripleDES(key), 8


def encrypt_block(key: bytes, data: bytes, alg: Algorithm) -> bytes:
    cipher, size = _block_cipher(key, alg)
    if len(data) % size:
        raise ValueError(f"data must be whole {size}-byte blocks")
    enc = Cipher(cipher, modes.ECB()).encryptor()
    return enc.update(data) + enc.finalize()


def pad_iso9797_m2(data: bytes, size: int) -> bytes:
    padded = data + b"\x80"
    return padded + b"\x00" * (-len(padded) % size)


def mac4(key: bytes, data: bytes, alg: Algorithm) -> bytes:
    """CBC-MAC, zero IV, ISO 9797-1 method 2 padding, first 4 bytes."""
    cipher, size = _block_cipher(key, alg)
    enc = Cipher(cipher, modes.CBC(b"\x00" * size)).encryptor()
    out = enc.update(pad_iso9797_m2(data, size)) + enc.finalize()
    return out[-size:][:4]


def ecb_encryptor(key: bytes, alg: Algorithm):
    """A reusable ECB encryptor under ``key`` and the block size, for ``mac4_ecb`` (ECB keeps no state
    between blocks, so one context serves any number of MACs)."""
    cipher, size = _block_cipher(key, alg)
    return Cipher(cipher, modes.ECB()).encryptor(), size


def mac4_ecb(encryptor, size: int, data: bytes) -> bytes:
    """``mac4`` with an ``ecb_encryptor`` of the key: the same CBC-MAC (zero IV, ISO 9797-1 method 2),
    chained here instead of building a cipher per MAC (which costs more than the MAC: the back office
    checks hundreds of TACs per uploaded batch)."""
    padded = pad_iso9797_m2(data, size)
    chain = 0
    for i in range(0, len(padded), size):
        block = (chain ^ int.from_bytes(padded[i : i + size], "big")).to_bytes(size, "big")
        chain = int.from_bytes(encryptor.update(block), "big")
    return chain.to_bytes(size, "big")[:4]


@lru_cache(maxsize=65_536)
def _issuer_tac_encryptor(master: bytes, card_no: str, algorithm: int):
    # About 0.9 KB a card, so under 60 MB: building a context costs ~10 µs, five times the MAC itself, and a
    # city's regular riders tap every day. Contexts are not shared between threads of one process safely:
    # the back office runs in processes (gunicorn sync workers, Celery prefork).
    alg = Algorithm(algorithm)
    return ecb_encryptor(tac_key(diversify(master, card_no, alg), alg), alg)


def issuer_tac(master: bytes, card_no: str, algorithm: int, data: bytes) -> bytes:
    """The TAC of ``data`` (amount | 06 | terminal no | terminal seq | date | time) under the card's TAC key
    diversified from the issuer's ``master``: what ``tac_compute`` gives, with the card's cipher context
    kept for the next TAC of the same card (the issuer checks thousands per batch and per cycle)."""
    encryptor, size = _issuer_tac_encryptor(master, card_no, int(algorithm))
    return mac4_ecb(encryptor, size, data)


PURCHASE_TYPES = (PURCHASE, COMPOSITE)


def issuer_purchase_tac_ok(
    master: bytes, card_no: str, algorithm: int, tac: bytes, *, amount_type_free: tuple[bytes, bytes]
) -> bool:
    """Whether ``tac`` is the card's TAC for a debit, as a purchase (06) or as a composite purchase (09).
    ``amount_type_free`` is (amount(4), terminal no(6) | terminal seq(4) | date(4) | time(3)): the TAC's
    data around the type byte. A terminal's record fixes the amount, terminal, serial and time; whether the
    card made a plain or a composite debit of it moves the same money, and stored taps do not keep it."""
    head, tail = amount_type_free
    return any(
        hmac.compare_digest(issuer_tac(master, card_no, algorithm, head + bytes([kind]) + tail), tac)
        for kind in PURCHASE_TYPES
    )


def diversify(master: bytes, card_no: str, alg: Algorithm) -> bytes:
    """The card's own 16-byte key from an issuer master key."""
    return diversify_serial(master, card_serial(card_no), alg)


def card_serial(card_no: str) -> bytes:
    """The card application serial (8 bytes) keys are diversified by: the last 8 bytes of the card number's
    BCD form (SFI 0x15 bytes 12–19), what a PSAM is given in INIT SAM FOR PURCHASE."""
    return card_number_bcd(card_no)[-8:]


def diversify_serial(master: bytes, serial: bytes, alg: Algorithm) -> bytes:
    """The card's own 16-byte key from a master key and the card's 8-byte application serial."""
    if len(serial) != 8:
        raise ValueError("a card application serial is 8 bytes")
    left = serial
    right = bytes(b ^ 0xFF for b in left)
    if alg == Algorithm.SM4:
        return encrypt_block(master, left + right, alg)
    return encrypt_block(master, left, alg) + encrypt_block(master, right, alg)


def purchase_session_key(dpk: bytes, *, random: bytes, atc: int, terminal_seq: int, alg: Algorithm) -> bytes:
    material = random + atc.to_bytes(2, "big") + terminal_seq.to_bytes(4, "big")[2:]
    if alg == Algorithm.SM4:
        return encrypt_block(dpk, pad_iso9797_m2(material, 16), alg)
    return encrypt_block(dpk, material, alg)


def mac1(
    session: bytes,
    *,
    amount: int,
    terminal_id: bytes,
    date: bytes,
    time: bytes,
    alg: Algorithm,
    kind: int = PURCHASE,
) -> bytes:
    return mac4(session, amount.to_bytes(4, "big") + bytes([kind]) + terminal_id + date + time, alg)


def mac2(session: bytes, *, amount: int, alg: Algorithm) -> bytes:
    return mac4(session, amount.to_bytes(4, "big"), alg)


def tac_key(dtk: bytes, alg: Algorithm) -> bytes:
    if alg == Algorithm.SM4:
        return dtk
    return bytes(a ^ b for a, b in zip(dtk[:8], dtk[8:16], strict=True))


def tac_compute(
    dtk: bytes,
    *,
    amount: int,
    terminal_id: bytes,
    terminal_seq: int,
    date: bytes,
    time: bytes,
    alg: Algorithm,
    kind: int = PURCHASE,
) -> bytes:
    """The transaction authentication code the card returns with DEBIT; only the issuer can recompute it."""
    data = (
        amount.to_bytes(4, "big")
        + bytes([kind])
        + terminal_id
        + terminal_seq.to_bytes(4, "big")
        + date
        + time
    )
    return mac4(tac_key(dtk, alg), data, alg)


def tac_verify(
    *,
    issuer_tac_master: bytes,
    card_no: str,
    tac: bytes,
    amount: int,
    terminal_id: bytes,
    terminal_seq: int,
    date: bytes,
    time: bytes,
    alg: Algorithm = Algorithm.SM4,
    kind: int = PURCHASE,
) -> bool:
    """Issuer side: recompute the TAC from the issuer's master key and compare in constant time."""
    dtk = diversify(issuer_tac_master, card_no, alg)
    expected = tac_compute(
        dtk,
        amount=amount,
        terminal_id=terminal_id,
        terminal_seq=terminal_seq,
        date=date,
        time=time,
        alg=alg,
        kind=kind,
    )
    return hmac.compare_digest(expected, tac)


def key_check_value(key: bytes, alg: Algorithm) -> bytes:
    """The key check value a key ceremony records instead of the key: the first 3 bytes of E(key, 0…0)."""
    size = 16 if alg == Algorithm.SM4 else 8
    return encrypt_block(key, bytes(size), alg)[:3]
