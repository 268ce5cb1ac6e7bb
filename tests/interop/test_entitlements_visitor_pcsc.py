"""A Jiaxing visitor's card at a Hangzhou park gate over the real PC/SC stack (pyscard -> pcscd -> vpcd -> the
virtual card), decided offline from Hangzhou's signed list with Jiaxing's visitors in it (run under
flock /tmp/citycard-pcsc.lock)."""

from __future__ import annotations

import pytest

from citycard.interop.entitlements import visitor_lists_sync
from citycard.terminal_kit.card.virtual import CardProfile, VirtualCard
from citycard.terminal_kit.reader import PcscReader
from tests.interop.conftest import park_gate, synced_list
from tests.interop.test_entitlements_roaming import AT
from tests.terminal_kit import kit

pytestmark = pytest.mark.django_db


@pytest.mark.pcsc
def test_the_visitors_card_over_pcscd_is_admitted_offline(tenant, recognised, tmp_path, pcscd, inserted):
    _holder, card = recognised
    jiaxing, hangzhou = tenant("jiaxing"), tenant("hangzhou")
    visitor_lists_sync(acquirer=hangzhou, at=AT)
    virtual = VirtualCard(CardProfile(card_no=card.card_no, holder_name="沈阿婆"), kit.keys(), balance=300)
    inserted(virtual)
    gate = park_gate(tmp_path, PcscReader(pcscd), jiaxing, hangzhou, synced_list(hangzhou), AT)
    decision = gate.present_card()
    assert (decision.allowed, decision.card_no, decision.type_code) == (
        True,
        card.card_no,
        "elderly-free-entry",
    )
    assert virtual.balance == 300
