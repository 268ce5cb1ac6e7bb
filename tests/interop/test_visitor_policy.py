"""The roaming agreement is the source of truth for visitors: a member's published fare rules carry the
visitor policy of each transit agreement it is in, whatever its own rows say."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
from django_tenants.utils import tenant_context

from citycard.interop.services.agreements import agreement_set, agreement_version_add
from citycard.tenants.fares import seeds, selectors, services

pytestmark = pytest.mark.django_db
SH = dt.timezone(dt.timedelta(hours=8))
AT = dt.datetime(2026, 11, 23, 8, 10, tzinfo=SH)


def _agree(policy: str) -> None:
    agreement_set(
        network_code="yrd",
        service="transit",
        valid_from=dt.date(2020, 1, 1),
        visitor_policy=policy,
        actor="test",
    )


def _publish(city, seed, effective_from=None):
    with tenant_context(city):
        services.fares_document_load(tenant=city, document=seed, actor="test")
        return services.fares_publish(tenant=city, actor="test", effective_from=effective_from)


def _elderly_visitor_fare(city) -> int:
    selectors._engines.clear()
    quote = selectors.fares_quote(tenant=city, route="1", at=AT, categories=["elderly"], issuer="310000")
    return quote.quote.fare_fen


def test_published_rules_take_the_agreements_visitor_policy(tenant):
    jiaxing = tenant("jiaxing")
    seed = copy.deepcopy(seeds.JIAXING)  # its own rows say host_rules for yrd, and a Shanghai entry
    seed["visitor_policy"]["tenants"] = [{"division": "310000", "policy": "no_concession"}]
    seed["visitor_policy"]["networks"] = [{"network": "yrd", "policy": "host_rules"}]
    _agree("home_categories")
    first = _publish(jiaxing, seed, effective_from=dt.datetime(2026, 1, 1, tzinfo=SH))
    policy = first.document["payload"]["visitor_policy"]
    (yrd,) = policy["networks"]
    assert (yrd["network"], yrd["policy"], yrd["agreement"]) == ("yrd", "home_category", "yrd-transit v1")
    assert "310000" in yrd["members"]
    assert policy["tenants"] == []  # a per-tenant entry would bypass the agreement for a member
    honoured = _elderly_visitor_fare(jiaxing)
    # The network adds a version with another policy: the member's rules are republished, rows unchanged.
    version = agreement_version_add(
        network_code="yrd",
        service="transit",
        effective_from=dt.date(2026, 1, 2),
        visitor_policy="local_fare",
        actor="test",
    )
    republished = version.fares_republished
    assert republished["jiaxing"] == first.version + 1 and republished["shanghai"] is None  # none published
    with tenant_context(jiaxing):
        second = services.fares_publish(tenant=jiaxing, actor="test")
        assert selectors.fares_validate(tenant=jiaxing) == []
    assert second.version == first.version + 1  # published again unchanged: the republished version
    payload = second.document["payload"]
    assert payload["visitor_policy"]["networks"][0]["policy"] == "no_concession"
    assert payload["visitor_policy"]["networks"][0]["agreement"] == "yrd-transit v2"
    assert payload["effective_from"] == "2026-01-02T04:00:00+08:00"  # the version's first business day
    base = _elderly_visitor_fare(jiaxing)
    assert honoured < base  # home category honoured (free or reduced) vs the standard fare
    agreement_version_add(
        network_code="yrd",
        service="transit",
        effective_from=dt.date(2026, 1, 3),
        visitor_policy="local_discounts",
        actor="test",
    )
    with tenant_context(jiaxing):
        third = services.fares_publish(tenant=jiaxing, actor="test")
    assert third.version == second.version + 1
    assert third.document["payload"]["visitor_policy"]["networks"][0]["policy"] == "host_rules"


def test_rules_name_the_agreed_network_even_when_their_rows_do_not(tenant):
    hangzhou = tenant("hangzhou")
    seed = copy.deepcopy(seeds.HANGZHOU)
    seed["visitor_policy"]["networks"] = []
    _agree("local_discounts")
    payload = _publish(hangzhou, seed, effective_from=dt.datetime(2026, 1, 1, tzinfo=SH)).document["payload"]
    assert payload["visitor_policy"]["networks"] == [
        {
            "network": "yrd",
            "policy": "host_rules",
            "agreement": "yrd-transit v1",
            "members": ["310000", "330400", "330424"],
        }
    ]


def test_no_agreement_leaves_the_rows_policy(tenant):
    shenzhen = tenant("shenzhen")
    seed = copy.deepcopy(seeds.JIAXING)
    seed["visitor_policy"]["networks"] = [{"network": "gba", "policy": "home_category"}]
    payload = _publish(shenzhen, seed, effective_from=dt.datetime(2026, 1, 1, tzinfo=SH)).document["payload"]
    (gba,) = payload["visitor_policy"]["networks"]
    assert gba["policy"] == "home_category" and "agreement" not in gba
