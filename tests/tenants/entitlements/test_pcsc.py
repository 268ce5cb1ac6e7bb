"""A park gate over the real PC/SC stack (pyscard -> pcscd -> vpcd -> the virtual card): the card's number
and validity read and authenticated by the terminal kit, answered offline from the signed list and online
by the tenant."""

from __future__ import annotations

import pytest
from django.db import connection

from citycard.platform.keys import tenant_public_keys
from citycard.tenants.entitlements.acceptance import acceptance_decide
from citycard.tenants.entitlements.selectors import entitlement_list_document
from citycard.terminal_kit.card.virtual import CardProfile, VirtualCard
from citycard.terminal_kit.entitlements import EntitlementList, Gate, UseQueue
from citycard.terminal_kit.reader import PcscReader
from tests.tenants.entitlements.conftest import AT
from tests.tenants.entitlements.test_offline import _setup
from tests.terminal_kit import kit

pytestmark = [pytest.mark.django_db, pytest.mark.pcsc]


def test_park_gate_reads_the_card_over_pcscd_offline_and_online(person, tmp_path, pcscd, inserted):
    _holder, card = _setup(person, quota=2)
    virtual = VirtualCard(CardProfile(card_no=card.card_no, holder_name="王小明"), kit.keys(), balance=500)
    inserted(virtual)
    validator = kit.validator(
        PcscReader(pcscd), tmp_path, fare=0, service="park", route="west-lake-gate", at=AT
    )
    held = EntitlementList().apply(
        entitlement_list_document(), keys=tenant_public_keys(tenant=connection.tenant)
    )
    gate = Gate("west-lake-gate", held, UseQueue(tmp_path / "uses.sqlite"), validator, clock=lambda: AT)
    offline = gate.present_card()
    assert (offline.allowed, offline.card_no, offline.remaining) == (True, card.card_no, 1), offline
    tap = validator.tap()  # the card again: read, authenticated (MAC2, TAC), its number for the online ask
    assert tap.outcome == "approved" and tap.record["tac"], tap.message
    online = acceptance_decide(service_point="west-lake-gate", card_no=tap.card_no, at=AT, reader="wl-gate-1")
    assert (online.allowed, online.masked_name) == (True, "王**")
    assert virtual.balance == 500
