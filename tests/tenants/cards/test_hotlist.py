"""Hotlist versions and deltas, the signed download endpoint, and card_facts in one query."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import tenant_context

from citycard.platform.keys import tenant_public_keys
from citycard.tenants.cards import services as s
from citycard.tenants.cards.selectors import card_facts, hotlist_payload, hotlist_version
from citycard.tenants.exchange.terminal_hotlist import terminal_hotlist_refresh
from citycard.tenants.terminals.services import terminal_resume, terminal_suspend
from citycard.terminal_kit.hotlist import Hotlist
from citycard.terminal_kit.signing import TerminalCredentials
from tests.terminal_auth import signed, terminal_with_key

pytestmark = pytest.mark.django_db
T0 = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)


def active_cards(holder, n):
    return [
        s.card_issue_now(scheme_code="01", cardholder_id=holder().pk, actor="t").card_no for _ in range(n)
    ]


def test_versions_and_deltas(holder):
    a, b, c = active_cards(holder, 3)
    v0 = hotlist_version()
    s.card_report_lost(card_no=a, actor="t", at=T0)
    s.card_report_lost(card_no=b, actor="t", at=T0)
    v2 = hotlist_version()
    assert v2 == v0 + 2
    s.card_unfreeze(card_no=a, actor="t", at=T0 + dt.timedelta(hours=1))
    s.card_report_lost(card_no=c, actor="t", at=T0 + dt.timedelta(hours=1))
    v4 = hotlist_version()
    assert hotlist_payload()["cards"] == sorted([b, c])
    assert hotlist_payload(since=v2)["delta"] == {"since": v2, "added": [c], "removed": [a]}
    assert hotlist_payload(since=v0)["delta"] == {"since": v0, "added": sorted([b, c]), "removed": []}
    assert hotlist_payload(since=v4)["delta"] == {"since": v4, "added": [], "removed": []}
    # Lost again after being found: listed now, so it is added, never removed.
    s.card_report_lost(card_no=a, actor="t", at=T0 + dt.timedelta(hours=2))
    assert hotlist_payload(since=v2)["delta"]["added"] == sorted([a, c])
    assert hotlist_payload(since=v2)["delta"]["removed"] == []


def test_download_endpoint_full_delta_and_up_to_date(client, holder, city):
    a, b = active_cards(holder, 2)
    s.card_report_lost(card_no=a, actor="t", at=T0)
    host = {"HTTP_HOST": "jiaxing.localhost"}
    terminal = terminal_with_key(terminal_id="JX-BUS-1", tenant_code="jiaxing")

    def get(path):
        return client.get(path, **host, **signed(terminal, path))

    keys = tenant_public_keys(tenant=city)
    full = get("/terminal/v1/hotlist")
    assert full.status_code == 200
    held = Hotlist().apply(json.loads(full.content), keys=keys)
    assert a in held and b not in held and held.tenant == "jiaxing"
    s.card_report_lost(card_no=b, actor="t", at=T0)
    s.card_unfreeze(card_no=a, actor="t", at=T0 + dt.timedelta(hours=1))
    delta = get(f"/terminal/v1/hotlist?since={held.version}")
    held = held.apply(json.loads(delta.content), keys=keys)
    assert b in held and a not in held and held.version == terminal_hotlist_refresh()
    assert get(f"/terminal/v1/hotlist?since={held.version}").status_code == 304
    assert get("/terminal/v1/hotlist?since=-1").status_code == 400


def _refusal(response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def test_the_hotlist_answers_only_a_signed_request_of_a_registered_active_terminal(
    client, holder, city, tenant
):
    (a,) = active_cards(holder, 1)
    s.card_report_lost(card_no=a, actor="t", at=T0)
    host = {"HTTP_HOST": "jiaxing.localhost"}
    path = "/terminal/v1/hotlist"
    terminal = terminal_with_key(terminal_id="JX-BUS-2", tenant_code="jiaxing")
    with tenant_context(tenant("hangzhou")):
        stranger = terminal_with_key(terminal_id="HZ-BUS-9", tenant_code="hangzhou")
    unsigned = client.get(path, **host)
    assert _refusal(unsigned) == (401, "unsigned") and a.encode() not in unsigned.content
    assert _refusal(client.get(path, **host, **signed(terminal, path + "?since=0"))) == (401, "bad_signature")
    stale = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    assert _refusal(client.get(path, **host, **signed(terminal, path, at=stale))) == (401, "clock_skew")
    # Another tenant's terminal, even signing as if it were Jiaxing's: its key is not registered here.
    posing = TerminalCredentials(tenant="jiaxing", key_id=stranger.key_id, key=stranger.key)
    assert _refusal(client.get(path, **host, **signed(posing, path))) == (401, "unknown_terminal")
    forged = TerminalCredentials(tenant="jiaxing", key_id=terminal.key_id, key=stranger.key)
    assert _refusal(client.get(path, **host, **signed(forged, path))) == (401, "bad_signature")
    terminal_suspend(terminal_id="JX-BUS-2", reason="stolen from the depot", actor="t")
    refused = client.get(path, **host, **signed(terminal, path))
    assert (
        _refusal(refused) == (403, "terminal_suspended")
        and "stolen from the depot" in refused.content.decode()
    )
    terminal_resume(terminal_id="JX-BUS-2", actor="t")
    assert client.get(path, **host, **signed(terminal, path)).status_code == 200


def test_card_facts_one_query_whatever_the_number(holder):
    few = active_cards(holder, 2)
    many = active_cards(holder, 30)
    s.card_report_lost(card_no=many[3], actor="t", at=T0)
    for numbers in (few, [*many, "3304000100000000000"]):
        with CaptureQueriesContext(connection) as queries:
            facts = card_facts(card_nos=numbers, at=T0 + dt.timedelta(seconds=1))
        assert len(queries.captured_queries) == 1
    assert "3304000100000000000" not in facts
    assert facts[many[3]].state == "frozen"
    assert facts[many[0]].scheme_code == "01" and facts[many[0]].state == "active"


def test_hotlist_published_for_the_network(holder, city):
    from citycard.platform.keys import tenant_verify

    (a,) = active_cards(holder, 1)
    s.card_report_lost(card_no=a, actor="t", at=T0)
    first = s.hotlist_publish(actor="t")
    assert s.hotlist_publish(actor="t").pk == first.pk  # unchanged list: same publication
    signer, payload = tenant_verify(document=first.document)
    assert signer.code == "jiaxing" and payload["cards"] == [a] and payload["kind"] == "hotlist"
    assert payload["hotlist_version"] == hotlist_version()


def test_taps_hotlisted_follows_the_one_rule_at_each_edge(holder):
    """The back office's bulk read gives what terminal_kit.hotlist.hotlisted gives, tap by tap."""
    from citycard.tenants.cards.selectors import taps_hotlisted
    from citycard.terminal_kit.hotlist import Listing, hotlisted

    card, other = active_cards(holder, 2)
    s.card_report_lost(card_no=card, actor="t", at=T0)
    s.card_unfreeze(card_no=card, actor="t", at=T0 + dt.timedelta(hours=3))
    grace, second = dt.timedelta(minutes=10), dt.timedelta(seconds=1)
    moments = [
        T0 - second,
        T0,
        T0 + grace - second,
        T0 + grace,
        T0 + dt.timedelta(hours=3) - second,
        T0 + dt.timedelta(hours=3),
    ]
    taps = [(card, at, grace) for at in moments] + [
        (card, T0 + second, dt.timedelta(0)),
        (other, T0 + grace, grace),
    ]
    found = taps_hotlisted(taps=taps)
    assert sorted(found) == [3, 4, 6]
    assert all(found[i] == (T0, "lost") for i in found)
    rule = Listing(listed_at=T0, removed_at=T0 + dt.timedelta(hours=3))
    assert [i for i, (_c, at, g) in enumerate(taps[:-1]) if hotlisted(rule, at=at, grace=g)] == [3, 4, 6]
