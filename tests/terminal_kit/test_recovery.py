"""Torn-tap recovery that is always right: decided from the card's counter and transaction log, whatever
happened to the card in between — each order of events through pcscd with two terminals, A (its PSAM in
the PC/SC PSAM reader) and B (another bus, another PSAM)."""

from __future__ import annotations

import datetime as dt

import pytest

from citycard.terminal_kit.card import apdu as A
from citycard.terminal_kit.card.crypto import tac_verify
from citycard.terminal_kit.card.vpcd import PSAM_PORT
from citycard.terminal_kit.reader import PcscReader
from citycard.terminal_kit.recovery import RETAP_WINDOW, UNDECIDED_TAC, LogEntry, torn_decide
from citycard.terminal_kit.sam import Psam
from tests.terminal_kit import kit
from tests.terminal_kit.conftest import PSAM_READER, reinsert

TERMINAL_B = bytes.fromhex("330100000002")
RECORD = {
    "card_counter": 5,
    "amount_fen": 200,
    "terminal_no": "330100000001",
    "tapped_at": "2026-11-24T08:30:00+08:00",
}


def entry(atc: int, *, terminal: str = "330100000001", amount: int = 200, time: str = "083000") -> LogEntry:
    raw = (
        atc.to_bytes(2, "big")
        + bytes(3)
        + amount.to_bytes(4, "big")
        + bytes([A.PURCHASE])
        + bytes.fromhex(terminal)
        + bytes.fromhex("20261124")
        + bytes.fromhex(time)
    )
    return LogEntry.parse(raw)


OURS, B_AT_5, B_AT_6 = entry(5), entry(5, terminal="330100000002"), entry(6, terminal="330100000002")


@pytest.mark.parametrize(
    "atc_now, log, outcome, reads",
    [
        (5, [], "not_happened", 0),  # counter unchanged: no debit since the torn INITIALIZE
        (6, [OURS], "happened", 1),  # our debit is the card's last
        (7, [B_AT_6, OURS], "happened", 2),  # ours, then a debit at B
        (6, [B_AT_5], "not_happened", 1),  # counter 5 went to B: ours never happened
        (7, [entry(6), entry(5, time="083001")], "not_happened", 2),  # counter 5 at another time
        (7, [entry(6), entry(5, amount=150)], "not_happened", 2),
        (16, [entry(n, terminal="330100000002") for n in range(15, 5, -1)], "undecided", 11),  # rolled over
        (6, [], "undecided", 1),  # a card that logs nothing
        (3, [], "undecided", 0),  # counter below the torn tap's: not that card
    ],
)
def test_the_verdict_comes_from_the_counter_and_the_log(atc_now, log, outcome, reads):
    asked = []

    def read(n):
        asked.append(n)
        return log[n - 1] if n <= len(log) else None

    verdict = torn_decide(RECORD, atc_now=atc_now, log=read)
    assert verdict.outcome == outcome, verdict.reason
    assert len(asked) == reads


class Rig:
    """One card in the vpcd reader, two validators: A (PSAM through pcscd) and B (its own PSAM)."""

    def __init__(self, pcscd, inserted, tmp_path, *, balance: int = 2000):
        self.close = lambda: self.a.sam.close()
        inserted(kit.psam(), port=PSAM_PORT, reader=PSAM_READER)
        self.card = kit.card(balance=balance)
        self.holder = inserted(self.card)
        self.at = kit.NOW
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        self.a = kit.validator(PcscReader(pcscd), tmp_path / "a", sam_client=Psam(PcscReader(PSAM_READER)))
        self.b = kit.validator(PcscReader(pcscd), tmp_path / "b", sam_client=kit.sam(TERMINAL_B))
        self.a.clock = self.b.clock = lambda: self.at
        self.reader = pcscd

    def tap(self, validator, *, minutes: float = 1):
        self.at += dt.timedelta(minutes=minutes)
        return validator.tap()

    def torn_at_a(self, when: str) -> None:
        self.card.tear(0x54, when)
        assert self.tap(self.a, minutes=0).outcome == "retap"
        assert [t.state for t in self.a.store.taps()] == ["torn"]
        reinsert(self.holder, self.reader)

    def a_records(self):
        return {t.state: t.record for t in self.a.store.taps()}


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


pcsc = pytest.mark.pcsc


@pytest.fixture
def make_rig(pcscd, inserted, tmp_path):
    rigs: list[Rig] = []

    def make(**kwargs) -> Rig:
        rigs.append(Rig(pcscd, inserted, tmp_path, **kwargs))
        return rigs[-1]

    yield make
    for rig in rigs:
        rig.close()  # the PSAM's PC/SC connection, before its card leaves


@pcsc
def test_debited_then_torn_and_retapped_at_a_is_completed_with_its_tac_and_not_charged_again(make_rig):
    rig = make_rig()
    rig.torn_at_a("after")
    again = rig.tap(rig.a, minutes=0.5)
    assert (again.outcome, again.message) == ("approved", "earlier tap completed (no second charge)")
    assert rig.card.balance == 1800
    (done,) = rig.a.store.taps()
    assert done.state == "complete" and done.record["status"] == "torn_resolved" and _tac_valid(done.record)


@pcsc
def test_torn_before_the_debit_and_retapped_at_a_is_voided_and_charged_once(make_rig):
    rig = make_rig()
    rig.torn_at_a("before")
    assert rig.tap(rig.a, minutes=0.5).outcome == "approved"
    assert rig.card.balance == 1800
    assert sorted(rig.a_records()) == ["complete", "void"]


@pcsc
def test_debited_at_a_then_paid_at_b_then_back_at_a_is_uploaded_unproven_with_the_log_record(make_rig):
    rig = make_rig()
    rig.torn_at_a("after")  # charged 200, A never heard
    on_b = rig.tap(rig.b, minutes=20)  # the next bus
    assert on_b.outcome == "approved", on_b.message
    back = rig.tap(rig.a, minutes=40)  # GET TRANSACTION PROVE would answer 9406 now
    assert back.outcome == "approved" and back.fare_fen == 200 and back.message == "ok"  # a new ride, paid
    assert rig.card.balance == 2000 - 3 * 200
    torn = next(t.record for t in rig.a.store.taps() if t.record["status"] != "complete")
    assert torn["status"] == "torn_unproven"
    assert torn["tac"] == rig.card.log[2].hex() and LogEntry.parse(bytes.fromhex(torn["tac"])).atc == 0
    batch = rig.a.store.batch_open(
        terminal_id="HZ-BUS-A",
        tenant="hangzhou",
        key=_key(),
        key_id="HZ-BUS-A:k1",
        rule_version=0,
        hotlist_version=0,
    )
    assert [t["status"] for t in batch["payload"]["transactions"]] == ["torn_unproven", "complete"]
    assert rig.tap(rig.a).outcome == "approved"  # and the card goes on riding at A


@pcsc
def test_torn_before_the_debit_at_a_then_paid_at_b_then_back_at_a_is_voided_never_stuck(make_rig):
    rig = make_rig()
    rig.torn_at_a("before")  # nothing charged; counter 0 still unused
    assert rig.tap(rig.b, minutes=20).outcome == "approved"  # B spends counter 0
    # GET TRANSACTION PROVE with counter 1 would now return B's MAC2 and TAC.
    for _ in range(3):
        assert rig.tap(rig.a, minutes=30).outcome == "approved"
    assert rig.card.balance == 2000 - 4 * 200
    states = sorted(t.state for t in rig.a.store.taps())
    assert states == ["complete", "complete", "complete", "void"]


@pcsc
def test_debited_then_torn_and_back_at_a_after_the_retap_window_completes_it_and_charges_the_new_ride(
    make_rig,
):
    rig = make_rig()
    rig.torn_at_a("after")
    later = rig.tap(rig.a, minutes=RETAP_WINDOW.total_seconds() / 60 + 60)
    assert later.outcome == "approved" and later.message == "ok"
    assert rig.card.balance == 1600
    statuses = sorted(t.record["status"] for t in rig.a.store.taps())
    assert statuses == ["complete", "torn_resolved"]
    assert all(_tac_valid(t.record) for t in rig.a.store.taps())


@pcsc
def test_debited_then_ten_rides_elsewhere_then_back_at_a_is_uploaded_undecided(make_rig):
    rig = make_rig(balance=5000)
    rig.torn_at_a("after")
    for _ in range(10):
        assert rig.tap(rig.b, minutes=10).outcome == "approved"
    assert rig.tap(rig.a, minutes=10).outcome == "approved"
    torn = next(t.record for t in rig.a.store.taps() if t.record["status"] != "complete")
    assert (torn["status"], torn["tac"]) == ("torn_undecided", UNDECIDED_TAC)
    assert "no longer holds counter 0" in torn["recovery"]
    assert rig.card.balance == 5000 - 12 * 200


def _key():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate()
