"""The network hotlist: a card reported lost in Jiaxing reaches every yrd member (counties included)
within one round, as a versioned list with deltas; gba members never see it."""

from __future__ import annotations

import pytest
from django_tenants.utils import tenant_context

from citycard.interop.hotlist import hotlists_exchange, network_hotlist
from citycard.interop.models import NetworkHotlist
from citycard.tenants.cards.services import card_report_lost, card_unfreeze
from citycard.tenants.exchange.models import InboxMessage
from citycard.tenants.exchange.selectors import network_hotlist as inbox_hotlist

from .conftest import DAY, at, card_no, cards_known

pytestmark = pytest.mark.django_db


def _cards_of(tenant, code, n):
    return [card_no(tenant(code).division_code, 700 + i) for i in range(n)]


def test_a_lost_card_reaches_every_member_with_deltas(tenant):
    jiaxing, hangzhou = tenant("jiaxing"), tenant("hangzhou")
    jx = _cards_of(tenant, "jiaxing", 3)
    hz = _cards_of(tenant, "hangzhou", 1)
    cards_known(jiaxing, jx)
    cards_known(hangzhou, hz)
    first = hotlists_exchange(now=at(DAY, 1))  # every city sends its (empty) list: the baseline
    assert first["sent"] >= 3
    with tenant_context(jiaxing):
        card_report_lost(card_no=jx[0], actor="test", at=at(DAY, 9))
        card_report_lost(card_no=jx[1], actor="test", at=at(DAY, 9, 5))
    with tenant_context(hangzhou):
        card_report_lost(card_no=hz[0], actor="test", at=at(DAY, 10))
    hotlists_exchange(now=at(DAY, 12))
    v1 = network_hotlist(network_code="yrd")
    assert v1["cards"] == sorted([jx[0], jx[1], hz[0]])
    for member in ("shanghai", "hangzhou", "jiaxing", "tonglu", "haiyan"):
        with tenant_context(tenant(member)):
            assert inbox_hotlist(network="yrd")["cards"] == v1["cards"], member
    with tenant_context(tenant("shenzhen")):
        assert inbox_hotlist(network="yrd")["cards"] == []
    # The card is found: the next round removes it, delivered as a delta.
    with tenant_context(jiaxing):
        card_unfreeze(card_no=jx[1], actor="test", at=at(DAY, 15))
    hotlists_exchange(now=at(DAY, 18))
    v2 = network_hotlist(network_code="yrd")
    assert v2["version"] > v1["version"] and v2["cards"] == sorted([jx[0], hz[0]])
    delta = network_hotlist(network_code="yrd", since=v1["version"])["delta"]
    assert delta == {"since": v1["version"], "added": [], "removed": [jx[1]]}
    with tenant_context(tenant("shanghai")):
        last = InboxMessage.objects.filter(kind="hotlist.network").order_by("-id").first()
        assert last.body["delta"]["removed"] == [jx[1]]  # a delta, not the whole list again
        assert inbox_hotlist(network="yrd") == {
            "network": "yrd",
            "version": v2["version"],
            "cards": v2["cards"],
        }
    # Nothing changed: a round sends and delivers nothing, the version stays.
    assert hotlists_exchange(now=at(DAY, 20)) == {"sent": 0, "delivered": 0}
    assert NetworkHotlist.objects.get(network__code="yrd").version == v2["version"]
