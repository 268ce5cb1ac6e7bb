"""Taps through the real stack: pyscard -> pcscd -> vpcd -> the virtual card over its socket."""

from __future__ import annotations

import pytest

from citycard.terminal_kit.card import apdu as A
from citycard.terminal_kit.hotlist import Hotlist
from citycard.terminal_kit.reader import CardChannel, CardRemoved, NoCard, PcscReader
from tests.terminal_kit import kit
from tests.terminal_kit.conftest import reinsert

pytestmark = pytest.mark.pcsc


def test_full_tap_insufficient_balance_and_hotlist_over_pcscd(pcscd, inserted, tmp_path):
    card = kit.card(balance=300)
    holder = inserted(card)
    v = kit.validator(PcscReader(pcscd), tmp_path, fare=200)
    first = v.tap()
    assert (first.outcome, card.balance) == ("approved", 100), first.message
    assert v.tap().outcome == "declined" and card.balance == 100
    v.hotlist = Hotlist(version=1, cards=frozenset({card.profile.card_no}))
    assert v.tap().outcome == "blocked" and card.blocked
    assert len(v.store.taps("complete")) == 1
    holder.remove()


@pytest.mark.parametrize("when, charged", [("after", True), ("before", False)])
def test_card_pulled_during_debit_then_retapped(pcscd, inserted, tmp_path, when, charged):
    card = kit.card(balance=1000)
    holder = inserted(card)
    v = kit.validator(PcscReader(pcscd), tmp_path, fare=200)
    card.tear(0x54, when)
    torn = v.tap()
    assert torn.outcome == "retap", torn.message
    assert card.balance == (800 if charged else 1000)
    reinsert(holder, pcscd)
    again = v.tap()
    assert again.outcome == "approved", again.message
    assert card.balance == 800
    holder.remove()


def test_pulling_the_card_mid_apdu_raises_card_removed(pcscd, inserted):
    card = kit.card()
    holder = inserted(card)
    reader = PcscReader(pcscd)
    reader.open()
    channel = CardChannel(reader)
    assert channel.send(A.select_aid()).ok
    card.tear(0x5C, "before")
    with pytest.raises(CardRemoved):
        channel.send(A.get_balance())
    reader.close()
    holder.remove()
    with pytest.raises(NoCard):
        PcscReader(pcscd).open()
