"""Rule rows -> validated, compiled, signed, published rule document; counties get their city's."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
from django.utils import translation
from django_tenants.utils import tenant_context

from citycard.platform.errors import DomainError
from citycard.platform.keys import tenant_public_keys
from citycard.tenants.fares import seeds, selectors, services
from citycard.tenants.fares.models import FareProduct, LegRule, RouteSet
from citycard.terminal_kit.fares import load_signed
from citycard.terminal_kit.signing import SignatureError

from .conftest import SH

# What a command or a refusal says is checked in English, the source text (the `english` fixture).
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]
AT = dt.datetime(2026, 11, 23, 8, 10, tzinfo=SH)


def test_published_document_is_signed_and_prices_the_seed_rules(published, tenant):
    publication = published("hangzhou", seeds.HANGZHOU)
    payload = publication.document["payload"]
    assert payload["kind"] == "fare_rules" and payload["tenant"] == "hangzhou"
    assert payload["home_divisions"] == ["330100", "330122"]
    assert payload["visitor_policy"]["networks"] == [
        {"network": "yrd", "policy": "home_category", "members": ["310000", "330400", "330424"]}
    ]
    hangzhou = tenant("hangzhou")
    engine = load_signed(publication.document, keys=tenant_public_keys(tenant=hangzhou), tenant="hangzhou")
    assert engine.version == publication.version
    result = selectors.fares_quote(tenant=hangzhou, categories=["elderly"], route="155", at=AT)
    assert (result.quote.fare_fen, result.quote.winner, result.version) == (100, "hz-elderly-peak", 1)
    assert selectors.fares_quote(tenant=hangzhou, route="155", at=AT).quote.fare_fen == 180
    assert (
        selectors.fares_quote(tenant=hangzhou, route="315", passes=["monthly"], at=AT).quote.fare_fen == 180
    )
    assert (
        selectors.fares_quote(tenant=hangzhou, route="314", passes=["monthly"], at=AT).quote.fare_fen == 100
    )


def test_jiaxing_seed(published, tenant):
    published("jiaxing", seeds.JIAXING)
    jiaxing = tenant("jiaxing")
    fares = {r: selectors.fares_quote(tenant=jiaxing, route=r, at=AT).quote.fare_fen for r in ("1", "2", "3")}
    assert fares == {"1": 100, "2": 200, "3": 100}


def test_county_gets_its_citys_document_and_cannot_publish(published, tenant):
    city_doc = published("hangzhou", seeds.HANGZHOU)
    tonglu = tenant("tonglu")
    publication, engine = selectors.fares_published(tenant=tonglu)
    assert publication.pk == city_doc.pk and engine.tenant == "hangzhou"
    # a Tonglu terminal treats a Hangzhou-issued card as local
    assert selectors.fares_quote(tenant=tonglu, route="1", passes=["monthly"], at=AT).quote.fare_fen == 100
    with tenant_context(tonglu), pytest.raises(DomainError, match=r"county.*hangzhou's fare rules"):
        services.fares_publish(tenant=tonglu, actor="test")
    with tenant_context(tonglu), pytest.raises(DomainError, match="county"):
        services.fares_document_load(tenant=tonglu, document=seeds.JIAXING, actor="test")


def test_publishing_unchanged_rules_again_is_harmless_changed_rules_make_a_new_version(published, tenant):
    first = published("jiaxing", seeds.JIAXING)
    jiaxing = tenant("jiaxing")
    with tenant_context(jiaxing):
        assert services.fares_publish(tenant=jiaxing, actor="test").pk == first.pk
        LegRule.objects.filter(code="jx-lines-1-3-half").update(value=4000)
        second = services.fares_publish(tenant=jiaxing, actor="test")
    assert second.version == first.version + 1
    assert selectors.fares_quote(tenant=jiaxing, route="1", at=AT).quote.fare_fen == 80
    assert (
        selectors.fares_published(tenant=jiaxing, version=first.version)[1]
        .quote(*_card_trip("330400", "1"))
        .fare_fen
        == 100
    )


def _card_trip(issuer, route):
    from citycard.terminal_kit.fares import Card, Trip

    return Card(issuer), Trip("bus", route, AT), {}


def test_tampered_document_refused(published, tenant):
    publication = published("hangzhou", seeds.HANGZHOU)
    hangzhou = tenant("hangzhou")
    forged = copy.deepcopy(publication.document)
    forged["payload"]["fare_products"][0]["amount_fen"] = 1
    with pytest.raises(SignatureError, match="does not match"):
        load_signed(forged, keys=tenant_public_keys(tenant=hangzhou))
    with pytest.raises(SignatureError, match="not 'jiaxing'"):
        load_signed(publication.document, keys=tenant_public_keys(tenant=hangzhou), tenant="jiaxing")
    type(publication).objects.filter(pk=publication.pk).update(document=forged)
    with pytest.raises(DomainError, match="refused: signature"):
        selectors.fares_published(tenant=hangzhou)


def _refused(tenant, change, match):
    hangzhou = tenant("hangzhou")
    doc = copy.deepcopy(seeds.HANGZHOU)
    change(doc)
    with tenant_context(hangzhou):
        before = FareProduct.objects.count()
        with pytest.raises(DomainError, match=match) as exc:
            services.fares_document_load(tenant=hangzhou, document=doc, actor="test")
        assert FareProduct.objects.count() == before  # nothing half-written
    return str(exc.value)


def test_equal_priority_for_the_same_case_refused(tenant):
    def change(doc):
        doc["leg_rules"].append(
            {
                "id": "hz-student",
                "service": "bus",
                "categories": ["student"],
                "kind": "percent",
                "value": 5000,
                "priority": 10,
            }
        )

    message = _refused(tenant, change, "leg rule hz-student: same priority 10 as hz-card-91")
    assert "one trip can match both" in message


def test_equal_priority_for_disjoint_cases_accepted(tenant):
    hangzhou = tenant("hangzhou")
    doc = copy.deepcopy(seeds.HANGZHOU)
    doc["leg_rules"].append(
        {
            "id": "hz-metro-student",
            "service": "metro",
            "categories": ["student"],
            "kind": "percent",
            "value": 5000,
            "priority": 10,
        }  # same priority as the bus card rule but only on the metro
    )
    doc["leg_rules"] = [r for r in doc["leg_rules"] if r["id"] != "hz-metro-card"]
    with tenant_context(hangzhou):
        services.fares_document_load(tenant=hangzhou, document=doc, actor="test")


def test_route_range_matching_nothing_refused(tenant):
    def change(doc):
        doc["route_sets"]["only-315"] = {"service": "bus", "ranges": [[315, 315]], "except": ["315"]}

    _refused(tenant, change, "route set only-315: matches no route")


def test_route_range_matching_no_known_route_refused(tenant):
    def change(doc):
        doc["known_routes"] = {"bus": ["1", "2", "155"]}
        doc["route_sets"]["night"] = {"service": "bus", "ranges": [[800, 899]]}

    _refused(tenant, change, "route set night: matches none of the known bus routes")


def test_negative_fare_refused(tenant):
    def change(doc):
        doc["fare_products"][0]["amount_fen"] = -200
        doc["caps"][0]["amount_fen"] = -1

    message = _refused(tenant, change, "fare product hz-bus: amount_fen -200 is negative")
    assert "cap hz-day-cap: amount_fen -1 is negative" in message


def test_all_problems_named_at_once(tenant):
    def change(doc):
        doc["leg_rules"][0]["route_set"] = "nowhere"
        doc["leg_rules"][1]["categories"] = ["pensioner"]
        doc["timeframes"]["hz-peak"][0]["end"] = "06:00"

    message = _refused(tenant, change, "route_set 'nowhere' is not defined")
    assert "categories pensioner unknown" in message and "timeframe hz-peak" in message


def test_publish_refuses_invalid_rows(published, tenant):
    published("hangzhou", seeds.HANGZHOU)
    hangzhou = tenant("hangzhou")
    with tenant_context(hangzhou):
        RouteSet.objects.filter(code="hz-bus-1-499-ex315").update(ranges="315-315", excluded=["315"])
        assert selectors.fares_validate(tenant=hangzhou) == [
            "route set hz-bus-1-499-ex315: matches no route (every route of its ranges is excluded, or it lists none)"
        ]
        with pytest.raises(DomainError, match="matches no route"):
            services.fares_publish(tenant=hangzhou, actor="test")
    assert hangzhou.publications.filter(kind="fare_rules").count() == 1


def test_rule_document_problems_read_in_the_persons_language(tenant):
    """A bad rule document's problems are named in Chinese first (中文优先), English under English; the
    draft check (the admin's fare page, `citycard fares validate`) reads the same way."""

    def change(doc):
        doc["fare_products"][0]["amount_fen"] = -200
        doc["route_sets"]["only-315"] = {"service": "bus", "ranges": [[315, 315]], "except": ["315"]}

    with translation.override("zh-hans"):
        message = _refused(tenant, change, "票价产品 hz-bus：amount_fen -200 为负数或过小")
        assert "线路集合 only-315：不匹配任何线路" in message
        assert "is negative" not in message and "matches no route" not in message
    with translation.override("en"):
        message = _refused(tenant, change, "fare product hz-bus: amount_fen -200 is negative or too small")
        assert "route set only-315: matches no route" in message
    hangzhou = tenant("hangzhou")
    with tenant_context(hangzhou):
        services.fares_document_load(tenant=hangzhou, document=seeds.HANGZHOU, actor="test")
        RouteSet.objects.filter(code="hz-bus-1-499-ex315").update(ranges="315-315", excluded=["315"])
        with translation.override("zh-hans"):
            assert selectors.fares_validate(tenant=hangzhou) == [
                "线路集合 hz-bus-1-499-ex315：不匹配任何线路（其范围内的线路均被排除，或未列出线路）"
            ]
            with pytest.raises(DomainError, match="不匹配任何线路"):
                selectors.fares_draft_engine(tenant=hangzhou)
