"""Routing by the card's issuer: own, roaming to the issuer's outbox, held exceptions, counties as cities."""

from __future__ import annotations

import json

import pytest
from django_tenants.utils import tenant_context

from citycard.tenants.terminals import checks
from citycard.tenants.terminals.models import TapException, Transaction
from citycard.tenants.terminals.services import roaming_pending_handoff
from citycard.tenants.terminals.simulate import SimTerminal

from .conftest import cards, taps_for
from .test_upload import post

pytestmark = pytest.mark.django_db


def upload(client, tenant_obj, register, code, terminal_id, card_list, now):
    sim = SimTerminal(terminal_id, code)
    with tenant_context(tenant_obj):
        register(sim)
    response = post(client, sim.sign(sim.payload(taps_for(sim, card_list, now), created_at=now)), host=code)
    assert response.status_code == 200, response.content
    return json.loads(response.content)["payload"]


def routed(tenant_obj) -> dict[str, tuple]:
    with tenant_context(tenant_obj):
        return {
            t.card_no[:6]: (t.routing, t.acquirer, t.issuer_tenant, t.network, t.outbox_state)
            for t in Transaction.objects.all()
        }


def test_routing_decisions_at_a_city_terminal(client, tenant, register, now):
    hangzhou = tenant("hangzhou")
    mixed = [
        *cards("330100", 1),  # own
        *cards("330400", 1),  # Jiaxing: yrd partner
        *cards("110000", 1),  # Beijing: no tenant issues these
        *cards("441900", 1),  # Dongguan: a tenant, but only in gba
        *cards("330122", 1),  # Tonglu prefix: a county of Hangzhou, clears as Hangzhou
    ]
    ack = upload(client, hangzhou, register, "hangzhou", "HZ-R", mixed, now)
    assert ack["accepted"] == 5
    assert routed(hangzhou) == {
        "330100": ("own", "hangzhou", "hangzhou", "", ""),
        "330400": ("roaming", "hangzhou", "jiaxing", "yrd", "sent"),  # in the interop outbox
        "110000": ("held", "hangzhou", "", "", ""),
        "441900": ("held", "hangzhou", "dongguan", "", ""),
        "330122": ("own", "hangzhou", "hangzhou", "", ""),
    }
    with tenant_context(hangzhou):
        held = {e.card_no[:6]: e.reason for e in TapException.objects.filter(kind="held")}
    assert held == {"110000": "unknown_issuer", "441900": "issuer_not_in_shared_network"}


def test_county_terminals_clear_as_the_city(client, tenant, register, now):
    tonglu = tenant("tonglu")
    upload(client, tonglu, register, "tonglu", "TL-1", [*cards("330100", 1), *cards("330400", 1)], now)
    assert routed(tonglu) == {
        "330100": ("own", "hangzhou", "hangzhou", "", ""),
        "330400": ("roaming", "hangzhou", "jiaxing", "yrd", "sent"),
    }


def test_roaming_taps_reach_the_wired_outbox_once(client, tenant, register, now, monkeypatch):
    jiaxing = tenant("jiaxing")
    delivered: list[dict] = []
    monkeypatch.setattr(checks, "ROAMING_SINK", None)  # as before citycard.tenants.exchange was installed
    with tenant_context(jiaxing), pytest.raises(Exception, match="未接入异地交换发件箱"):
        roaming_pending_handoff(actor="test")
    # Taps stored while no outbox was wired wait as pending…
    upload(client, jiaxing, register, "jiaxing", "JX-1", cards("330100", 2), now)
    monkeypatch.setattr(checks, "ROAMING_SINK", lambda records, actor, **_: delivered.extend(records))
    with tenant_context(jiaxing):
        assert roaming_pending_handoff(actor="test") == 2
        assert roaming_pending_handoff(actor="test") == 0
    # …and once one is wired, new roaming taps go straight through in the upload's transaction.
    upload(client, jiaxing, register, "jiaxing", "JX-2", [*cards("310000", 1), *cards("330400", 1)], now)
    assert [(r["acquirer"], r["issuer"], r["network"]) for r in delivered] == [
        ("jiaxing", "hangzhou", "yrd")
    ] * 2 + [("jiaxing", "shanghai", "yrd")]
    assert delivered[-1]["batch_id"] == "JX-2-000001" and delivered[-1]["amount_fen"] == 200
    with tenant_context(jiaxing):
        states = sorted(Transaction.objects.values_list("routing", "outbox_state"))
    assert states == [("own", ""), ("roaming", "sent"), ("roaming", "sent"), ("roaming", "sent")]
