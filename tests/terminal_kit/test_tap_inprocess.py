"""Taps against the virtual card in-process: every outcome, torn taps both ways, the reader's 61xx/6Cxx."""

from __future__ import annotations

import pytest

from citycard.terminal_kit.card import apdu as A
from citycard.terminal_kit.card.crypto import Algorithm, tac_verify
from citycard.terminal_kit.card.virtual import EMPTY_TRANSIT
from citycard.terminal_kit.hotlist import Hotlist
from citycard.terminal_kit.reader import CardChannel, InProcessReader
from tests.terminal_kit import kit


def test_a_tap_debits_once_and_records_a_tac_the_issuer_verifies(tmp_path):
    c = kit.card(balance=1000)
    v = kit.validator(InProcessReader(c), tmp_path, fare=180)
    result = v.tap()
    assert (result.outcome, result.fare_fen, result.balance_fen, c.balance) == ("approved", 180, 820, 820)
    (stored,) = v.store.taps("complete")
    rec = stored.record
    assert (rec["card_counter"], rec["balance_before_fen"], rec["balance_after_fen"]) == (0, 1000, 820)
    assert tac_verify(
        issuer_tac_master=kit.TAC_MASTER,
        card_no=c.profile.card_no,
        tac=bytes.fromhex(rec["tac"]),
        amount=180,
        terminal_id=kit.TERMINAL_ID,
        terminal_seq=rec["terminal_seq"],
        date=bytes.fromhex("20261124"),
        time=bytes.fromhex("083000"),
        kind=0x09,  # a composite purchase: the card's transit record was written with the debit
    )
    assert not tac_verify(
        issuer_tac_master=kit.PURCHASE_MASTER,
        card_no=c.profile.card_no,
        tac=bytes.fromhex(rec["tac"]),
        amount=180,
        terminal_id=kit.TERMINAL_ID,
        terminal_seq=rec["terminal_seq"],
        date=bytes.fromhex("20261124"),
        time=bytes.fromhex("083000"),
        kind=0x09,
    )
    assert c.log[0][9] == 0x09 and int.from_bytes(c.log[0][5:9], "big") == 180
    assert rec["tx_type"] == 0x09 and rec["card_trip"] == EMPTY_TRANSIT.hex()  # a fixed fare: no journey


def test_3des_cards_work_too(tmp_path):
    c = kit.card(balance=500, algorithm=Algorithm.TRIPLE_DES)
    assert kit.validator(InProcessReader(c), tmp_path).tap().outcome == "approved"
    assert c.balance == 300


def test_insufficient_balance_is_declined_and_nothing_recorded(tmp_path):
    c = kit.card(balance=100)
    v = kit.validator(InProcessReader(c), tmp_path, fare=200)
    assert v.tap().outcome == "declined"
    assert c.balance == 100 and v.store.taps() == []


def test_a_hotlisted_card_is_blocked_on_the_card_itself(tmp_path):
    c = kit.card()
    v = kit.validator(InProcessReader(c), tmp_path)
    v.hotlist = Hotlist(tenant="jiaxing", version=3, cards=frozenset({c.profile.card_no}))
    assert v.tap().outcome == "blocked"
    assert c.blocked and c.balance == 5000
    v.hotlist = Hotlist()
    assert v.tap().outcome == "blocked"  # still blocked: the card refuses, whatever the list says


@pytest.mark.parametrize("when, charged", [("after", True), ("before", False)])
def test_a_torn_debit_is_resolved_on_the_retap_never_charging_twice(tmp_path, when, charged):
    c = kit.card(balance=1000)
    reader = InProcessReader(c)
    v = kit.validator(reader, tmp_path, fare=200)
    c.tear(0x54, when)
    assert v.tap().outcome == "retap"
    assert [t.state for t in v.store.taps()] == ["torn"]
    assert c.balance == (800 if charged else 1000)
    reader.insert(c)
    result = v.tap()
    assert result.outcome == "approved"
    assert c.balance == 800  # one charge either way
    states = sorted(t.state for t in v.store.taps())
    assert states == (["complete"] if charged else ["complete", "void"])
    if charged:
        assert v.store.taps("complete")[0].record["status"] == "torn_resolved"


def test_another_card_between_does_not_disturb_the_torn_record(tmp_path):
    first, second = kit.card(1, balance=1000), kit.card(2, balance=1000)
    reader = InProcessReader(first)
    v = kit.validator(reader, tmp_path)
    first.tear(0x54, "after")
    assert v.tap().outcome == "retap"
    reader.insert(second)
    assert v.tap().outcome == "approved"
    assert [t.state for t in v.store.taps()] == ["torn", "complete"]
    reader.insert(first)
    assert v.tap().outcome == "approved" and first.balance == 800


def test_the_channel_fetches_61xx_and_resends_on_6cxx():
    c = kit.card()
    c.get_response_style = True
    reader = InProcessReader(c)
    reader.open()
    channel = CardChannel(reader)
    assert channel.send(A.select_aid()).ok
    balance = channel.send(A.get_balance())
    assert balance.ok and int.from_bytes(balance.data, "big") == 5000
    # Asking for more than the file holds gets 6C1E from the card; the channel resends with Le=30.
    c.get_response_style = False
    public = channel.send(A.read_binary(A.SFI_PUBLIC, 0x40))
    assert public.ok and len(public.data) == 30


def test_store_batches_are_stable_and_deleted_only_after_a_valid_ack(tmp_path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from citycard.terminal_kit.signing import SignatureError, public_key_bytes, sign_document

    c = kit.card(balance=5000)
    v = kit.validator(InProcessReader(c), tmp_path)
    for _ in range(3):
        assert v.tap().outcome == "approved"
    terminal_key, tenant_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    args = dict(
        terminal_id="HZ-1",
        tenant="hangzhou",
        key=terminal_key,
        key_id="HZ-1:k1",
        rule_version=1,
        hotlist_version=1,
    )
    batch = v.store.batch_open(**args)
    assert len(batch["payload"]["transactions"]) == 3
    assert v.store.batch_open(**args) == batch  # a retry sends the same batch
    batch_id = batch["payload"]["batch_id"]
    forged = sign_document({"batch_id": batch_id}, key=Ed25519PrivateKey.generate(), key_id="hangzhou:s1")
    with pytest.raises(SignatureError):
        v.store.batch_acknowledged(
            batch_id=batch_id, ack=forged, tenant_keys={"hangzhou:s1": public_key_bytes(tenant_key)}
        )
    assert len(v.store.taps()) == 3
    ack = sign_document({"batch_id": batch_id, "results": []}, key=tenant_key, key_id="hangzhou:s1")
    v.store.batch_acknowledged(
        batch_id=batch_id, ack=ack, tenant_keys={"hangzhou:s1": public_key_bytes(tenant_key)}
    )
    assert v.store.taps() == [] and v.store.batch_open(**args) is None
