"""The network hotlist: a card reported lost in Jiaxing reaches every yrd member (counties included)
within one round, as a versioned list with deltas; gba members never see it."""

from __future__ import annotations

import json

import pytest
from django_tenants.utils import tenant_context

from citycard.interop.models import NetworkHotlist
from citycard.interop.selectors import network_hotlist
from citycard.interop.services.hotlist import hotlists_exchange
from citycard.tenants.cards.services import card_report_lost, card_unfreeze
from citycard.tenants.exchange.models import InboxMessage
from citycard.tenants.exchange.selectors import network_hotlist as inbox_hotlist
from tests.terminal_auth import signed, terminal_with_key

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


class _Office:
    """The tenant's site as a terminal reaches it: the Django test client behind terminal_kit's HttpGet."""

    def __init__(self, client, code):
        self.client, self.host = client, f"{code}.localhost"

    def get(self, url, headers):
        meta = {"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()}
        response = self.client.get(url.split("localhost", 1)[1], HTTP_HOST=self.host, **meta)
        return response.status_code, response.content


def _terminal(client, tenant, code, tmp_path):
    from citycard.platform.keys import tenant_public_keys
    from citycard.terminal_kit.store import TapStore
    from citycard.terminal_kit.sync import Downloader

    store = TapStore(tmp_path / f"{code}.sqlite")
    with tenant_context(tenant(code)):
        credentials = terminal_with_key(terminal_id=f"{code.upper()}-BUS-1", tenant_code=code)
    down = Downloader(
        base_url=f"http://{code}.localhost",
        tenant_keys=tenant_public_keys(tenant=tenant(code)),
        credentials=credentials,
        get=_Office(client, code).get,
    )
    return store, down


def test_terminals_block_network_and_city_cards(tenant, client, tmp_path):
    """A Jiaxing card reported lost is blocked by a Hangzhou terminal after one exchange round; a Tonglu
    (county) terminal blocks Hangzhou's lost cards and the network's; deltas keep working."""
    jiaxing, hangzhou = tenant("jiaxing"), tenant("hangzhou")
    jx = _cards_of(tenant, "jiaxing", 2)
    hz = _cards_of(tenant, "hangzhou", 2)
    cards_known(jiaxing, jx)
    cards_known(hangzhou, hz)
    hz_store, hz_terminal = _terminal(client, tenant, "hangzhou", tmp_path)
    tl_store, tl_terminal = _terminal(client, tenant, "tonglu", tmp_path)
    hotlists_exchange(now=at(DAY, 1))
    assert hz_terminal.hotlist(hz_store).cards == frozenset()
    assert tl_terminal.hotlist(tl_store).cards == frozenset()
    with tenant_context(hangzhou):
        card_report_lost(card_no=hz[0], actor="test", at=at(DAY, 8))
    held_hz = hz_terminal.hotlist(hz_store)
    assert hz[0] in held_hz  # own card: at once, before any round
    with tenant_context(jiaxing):
        card_report_lost(card_no=jx[0], actor="test", at=at(DAY, 9))
    assert jx[0] not in hz_terminal.hotlist(hz_store)  # not yet exchanged
    hotlists_exchange(now=at(DAY, 12))
    held_hz = hz_terminal.hotlist(hz_store)
    assert jx[0] in held_hz and hz[0] in held_hz
    held_tl = tl_terminal.hotlist(tl_store)
    assert held_tl.tenant == "tonglu" and {hz[0], jx[0]} <= held_tl.cards
    # Hangzhou lists a second card: the county learns it through the city's publication in the next round.
    with tenant_context(hangzhou):
        card_report_lost(card_no=hz[1], actor="test", at=at(DAY, 13))
    hotlists_exchange(now=at(DAY, 14))
    held_tl = tl_terminal.hotlist(tl_store)
    assert hz[1] in held_tl
    # Jiaxing's card is found: removed everywhere after the next round, as deltas.
    with tenant_context(jiaxing):
        card_unfreeze(card_no=jx[0], actor="test", at=at(DAY, 15))
    hotlists_exchange(now=at(DAY, 16))
    version = held_hz.version
    path = f"/terminal/v1/hotlist?since={version}"
    response = client.get(path, HTTP_HOST="hangzhou.localhost", **signed(hz_terminal.credentials, path))
    assert json.loads(response.content)["payload"]["delta"]["removed"] == [jx[0]]
    held_hz = hz_terminal.hotlist(hz_store)
    assert jx[0] not in held_hz and held_hz.version > version
    assert jx[0] not in tl_terminal.hotlist(tl_store)
    # Up to date: 304, the version stays.
    path = f"/terminal/v1/hotlist?since={held_hz.version}"
    response = client.get(path, HTTP_HOST="hangzhou.localhost", **signed(hz_terminal.credentials, path))
    assert response.status_code == 304


def test_combined_version_moves_when_either_part_changes(tenant):
    from citycard.tenants.exchange.terminal_hotlist import terminal_hotlist_payload, terminal_hotlist_refresh

    hangzhou = tenant("hangzhou")
    (hz,) = _cards_of(tenant, "hangzhou", 1)
    cards_known(hangzhou, [hz])
    with tenant_context(hangzhou):
        from citycard.tenants.cards.selectors import hotlist_version

        v0 = terminal_hotlist_refresh()
        assert v0 > hotlist_version()  # above any version of the old own-only list a terminal may hold
        assert terminal_hotlist_refresh() == v0  # nothing moved
    hotlists_exchange(now=at(DAY, 1))  # the network part arrives (empty lists): the version still moves
    with tenant_context(hangzhou):
        v1 = terminal_hotlist_refresh()
        assert v1 > v0
        card_report_lost(card_no=hz, actor="test", at=at(DAY, 8))
        v2 = terminal_hotlist_refresh()
        assert v2 > v1
        assert terminal_hotlist_payload(since=v1)["delta"] == {"since": v1, "added": [hz], "removed": []}
        assert terminal_hotlist_payload(since=v2 + 5)["cards"] == [hz]
