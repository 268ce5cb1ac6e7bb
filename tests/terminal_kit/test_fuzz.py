"""Malformed and truncated card answers: the terminal refuses them, never crashes, never records a tap it
cannot prove."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citycard.terminal_kit.card.crypto import tac_verify
from citycard.terminal_kit.card.virtual import VirtualCard
from citycard.terminal_kit.reader import InProcessReader
from tests.terminal_kit import kit


def tac_of(record):
    # The card's log entry for the debit this record describes.
    return (
        record["card_counter"].to_bytes(2, "big")
        + b"\x00\x00\x00"
        + record["amount_fen"].to_bytes(4, "big")
        + bytes([record["tx_type"]])
        + bytes.fromhex(record["terminal_no"])
        + bytes.fromhex(record["tapped_at"][:10].replace("-", ""))
        + bytes.fromhex(record["tapped_at"][11:19].replace(":", ""))
    )


def _tac_valid(record) -> bool:
    return tac_verify(
        issuer_tac_master=kit.TAC_MASTER,
        card_no=record["card_no"],
        tac=bytes.fromhex(record["tac"]),
        amount=record["amount_fen"],
        terminal_id=bytes.fromhex(record["terminal_no"]),
        terminal_seq=record["terminal_seq"],
        date=bytes.fromhex(record["tapped_at"][:10].replace("-", "")),
        time=bytes.fromhex(record["tapped_at"][11:19].replace(":", "")),
        kind=record["tx_type"],
    )


class GarblingCard(VirtualCard):
    """A card whose answer to one instruction is replaced by arbitrary bytes."""

    garble_ins: int = 0
    garbage: bytes = b""

    def process(self, command: bytes) -> bytes:
        answer = super().process(command)
        if command[1] == self.garble_ins:
            return self.garbage
        return answer


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ins=st.sampled_from([0xA4, 0xB0, 0xB2, 0x50, 0xDC, 0x54]),
    garbage=st.one_of(
        st.binary(max_size=40),
        st.builds(
            lambda d, sw: d + sw,
            st.binary(max_size=20),
            st.sampled_from([b"\x90\x00", b"\x61\x05", b"\x6c\x00"]),
        ),
    ),
)
def test_garbled_answers_never_crash_and_never_record_an_unproven_tap(tmp_path_factory, ins, garbage):
    base = kit.card(balance=1000)
    card = GarblingCard(base.profile, base.keys, balance=1000)
    card.garble_ins, card.garbage = ins, garbage
    v = kit.validator(InProcessReader(card), tmp_path_factory.mktemp("fuzz"))
    result = v.tap()
    assert result.outcome in {"approved", "declined", "retap", "blocked", "error", "no_card"}
    complete = v.store.taps("complete")
    for tap in complete:
        # A complete record always carries the TAC the card produced for exactly this debit.
        assert tac_of(tap.record) == card.log[0] and _tac_valid(tap.record)
    if result.outcome == "approved":
        assert card.balance == 800 and len(complete) == 1
    else:
        assert complete == []
