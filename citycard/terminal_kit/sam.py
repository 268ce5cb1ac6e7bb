"""The terminal's software SAM (安全模块): the network purchase key, MAC1, MAC2 checks, block MACs.

A production terminal holds a PSAM card doing this (``80 70`` / ``80 72``); here it is software with the
same interface. It never holds an issuer's TAC key: only the issuer can check a TAC.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from citycard.terminal_kit.card.crypto import Algorithm, diversify, mac1, mac2, purchase_session_key
from citycard.terminal_kit.card.virtual import block_mac


@dataclass(frozen=True)
class PurchaseAuth:
    session: bytes
    mac1: bytes
    algorithm: Algorithm


class SoftwareSam:
    def __init__(self, *, terminal_id: bytes, purchase_master: bytes, maintenance_master: bytes) -> None:
        if len(terminal_id) != 6:
            raise ValueError("the terminal id is 6 bytes")
        self.terminal_id = terminal_id
        self._purchase_master = purchase_master
        self._maintenance_master = maintenance_master

    def purchase(
        self,
        *,
        card_no: str,
        algorithm: Algorithm,
        random: bytes,
        atc: int,
        terminal_seq: int,
        amount: int,
        date: bytes,
        time: bytes,
    ) -> PurchaseAuth:
        dpk = diversify(self._purchase_master, card_no, algorithm)
        session = purchase_session_key(dpk, random=random, atc=atc, terminal_seq=terminal_seq, alg=algorithm)
        return PurchaseAuth(
            session=session,
            mac1=mac1(
                session, amount=amount, terminal_id=self.terminal_id, date=date, time=time, alg=algorithm
            ),
            algorithm=algorithm,
        )

    @staticmethod
    def mac2_valid(auth: PurchaseAuth, *, amount: int, mac2_value: bytes) -> bool:
        return hmac.compare_digest(mac2(auth.session, amount=amount, alg=auth.algorithm), mac2_value)

    def block_mac(self, *, card_no: str, algorithm: Algorithm, challenge: bytes) -> bytes:
        return block_mac(diversify(self._maintenance_master, card_no, algorithm), challenge, algorithm)
