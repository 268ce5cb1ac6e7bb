"""Generated taps and signed batches, for the demo, the tests and the benchmark (not for production).

Card numbers are real-shaped: the issuer's 6-digit division code, a serial, a Luhn check digit. The TAC
is the one the card would compute when the simulator is given its issuer's TAC master (``tac_masters``,
by division code), random hex otherwise (a card of an issuer whose key the simulation lacks); everything
else follows the wire format of docs/terminal-protocol.md. ``SimTerminal`` keeps a terminal's sequence and each card's
counter so generated batches are gap-free unless asked otherwise.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.card.crypto import Algorithm, diversify, tac_compute
from citycard.terminal_kit.signing import public_key_bytes, sign_document

_LUHN_DOUBLE = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def luhn_digit(body: str) -> str:
    """The check digit that makes ``body + digit`` pass Luhn."""
    digits = [int(c) for c in body]
    total = sum(_LUHN_DOUBLE[d] for d in digits[-1::-2]) + sum(digits[-2::-2])
    return str((10 - total % 10) % 10)


def card_number(division: str, serial: int) -> str:
    body = f"{division}{serial:012d}"
    return body + luhn_digit(body)


@dataclass
class SimCard:
    card_no: str
    balance_fen: int = 100_000
    counter: int = 0

    @property
    def issuer(self) -> str:
        return self.card_no[:6]


@dataclass
class SimTerminal:
    terminal_id: str
    tenant: str
    service: str = "bus"
    route: str = "1"
    private_key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    key_version: int = 1
    seq: int = 0
    batches: int = 0
    terminal_no: str = "000000000001"  # the SAM's terminal number (12 hex digits)
    tac_masters: dict[str, bytes] = field(default_factory=dict)  # issuer division -> card TAC master

    @property
    def public_key(self) -> bytes:
        return public_key_bytes(self.private_key)

    @property
    def key_id(self) -> str:
        return f"{self.terminal_id}:k{self.key_version}"

    def tap(
        self, card: SimCard, *, at: dt.datetime, amount_fen: int = 200, rng: random.Random | None = None
    ) -> dict:
        rng = rng or random
        self.seq += 1
        card.counter += 1
        before = card.balance_fen
        card.balance_fen -= amount_fen
        return {
            "card_no": card.card_no,
            "issuer": card.issuer,
            "card_counter": card.counter,
            "terminal_seq": self.seq,
            "amount_fen": amount_fen,
            "balance_before_fen": before,
            "balance_after_fen": card.balance_fen,
            "tapped_at": at.isoformat(),
            "service": self.service,
            "route": self.route,
            "tac": (
                self._tac(card, amount_fen, at)
                if card.issuer in self.tac_masters
                else f"{rng.getrandbits(32):08x}"
            ),
            "terminal_no": self.terminal_no,
            "algorithm": int(Algorithm.SM4),
            "kind": "purchase",
            "status": "complete",
            "card_scheme": "01",
        }

    def _tac(self, card: SimCard, amount_fen: int, at: dt.datetime) -> str:
        local = at.astimezone(BEIJING)
        dtk = diversify(self.tac_masters[card.issuer], card.card_no, Algorithm.SM4)
        return tac_compute(
            dtk,
            amount=amount_fen,
            terminal_id=bytes.fromhex(self.terminal_no),
            terminal_seq=self.seq,
            date=bytes.fromhex(local.strftime("%Y%m%d")),
            time=bytes.fromhex(local.strftime("%H%M%S")),
            alg=Algorithm.SM4,
        ).hex()

    def payload(self, taps: list[dict], *, created_at: dt.datetime, batch_id: str | None = None) -> dict:
        self.batches += 1
        return {
            "batch_id": batch_id or f"{self.terminal_id}-{self.batches:06d}",
            "terminal_id": self.terminal_id,
            "tenant": self.tenant,
            "created_at": created_at.isoformat(),
            "rule_version": 1,
            "hotlist_version": 1,
            "transactions": taps,
        }

    def sign(
        self, payload: dict[str, Any], *, key: Ed25519PrivateKey | None = None, key_id: str | None = None
    ) -> bytes:
        document = sign_document(payload, key=key or self.private_key, key_id=key_id or self.key_id)
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()

    def rotate(self) -> Ed25519PrivateKey:
        """A new key pair (the caller registers it with terminal_key_rotate); returns the old key."""
        old = self.private_key
        self.private_key = Ed25519PrivateKey.generate()
        self.key_version += 1
        return old
