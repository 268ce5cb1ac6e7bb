"""Editing single rule rows through the services: checked like the admin forms, audited, all or nothing,
and refused in a county (which uses its city's rules read-only)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.utils import translation
from django_tenants.utils import tenant_context

from citycard.platform.audit.models import AuditEntry
from citycard.platform.errors import DomainError, NotFound
from citycard.tenants.fares import selectors, services
from citycard.tenants.fares.models import (
    Cap,
    FareProduct,
    LegRule,
    Quota,
    RouteSet,
    Timeframe,
    TimeframeWindow,
    TransferRule,
    VisitorPolicy,
)

pytestmark = pytest.mark.django_db
SH = dt.timezone(dt.timedelta(hours=8))
ACTOR = "user:tester"


@pytest.fixture(autouse=True)
def _english():
    """The refusals' words as these tests read them: Django's own validation messages follow the active
    language (zh-hans by default)."""
    with translation.override("en"):
        yield


@pytest.fixture
def city(tenant):
    hz = tenant("hangzhou")
    with tenant_context(hz):
        yield hz


def _entries(action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action))


def _routes(city, code="r1-499", **extra):
    return services.route_set_create(
        tenant=city,
        actor=ACTOR,
        fields={"code": code, "service": "bus", "ranges": "1-499", "excluded": ["315"], **extra},
    )


def test_each_entity_created_changed_and_deleted_with_audit(city):
    routes = _routes(city)
    quota = services.quota_create(tenant=city, actor=ACTOR, fields={"code": "free30", "rides": 30})
    peak = services.timeframe_create(
        tenant=city,
        actor=ACTOR,
        fields={"code": "peak"},
        windows=[{"days": [1, 2, 3, 4, 5], "start": "07:00", "end": "09:00"}],
    )
    product = services.fare_product_create(
        tenant=city, actor=ACTOR, fields={"code": "bus", "route_set": "r1-499", "amount_fen": 200}
    )
    rule = services.leg_rule_create(
        tenant=city,
        actor=ACTOR,
        fields={
            "code": "elderly",
            "route_set": "r1-499",
            "timeframe": "peak",
            "quota": "free30",
            "categories": ["elderly"],
            "kind": "free",
            "priority": 30,
        },
    )
    transfer = services.transfer_rule_create(
        tenant=city,
        actor=ACTOR,
        fields={"code": "bus-bus", "from_route_set": routes, "to_route_set": "r1-499", "amount_fen": -100},
    )
    services.cap_create(tenant=city, actor=ACTOR, fields={"code": "day", "amount_fen": 1000})
    policy = services.visitor_policy_create(
        tenant=city, actor=ACTOR, fields={"scope": "network", "key": "yrd", "policy": "home_category"}
    )
    assert (rule.route_set, rule.timeframe, rule.quota) == (routes, peak, quota)
    assert transfer.from_route_set == transfer.to_route_set == routes
    assert [(w.days, w.start, w.end) for w in peak.windows.all()] == [([1, 2, 3, 4, 5], "07:00", "09:00")]
    for entity, code in [
        ("route_set", "r1-499"),
        ("quota", "free30"),
        ("timeframe", "peak"),
        ("fare_product", "bus"),
        ("leg_rule", "elderly"),
        ("transfer_rule", "bus-bus"),
        ("cap", "day"),
        ("visitor_policy", str(policy)),
    ]:
        (entry,) = _entries(f"fares.{entity}.create")
        assert (entry.actor, entry.object_type, entry.object_id) == (ACTOR, entity, code)
    created = json.loads(_entries("fares.leg_rule.create")[0].payload)
    assert created["route_set"] == "r1-499" and created["categories"] == ["elderly"]
    assert json.loads(_entries("fares.timeframe.create")[0].payload)["windows"][0]["start"] == "07:00"

    services.fare_product_change(tenant=city, actor=ACTOR, code="bus", changes={"amount_fen": 250})
    product.refresh_from_db()
    assert product.amount_fen == 250
    (entry,) = _entries("fares.fare_product.change")
    assert json.loads(entry.payload) == {"changed": {"amount_fen": {"from": 200, "to": 250}}}
    services.leg_rule_change(tenant=city, actor=ACTOR, code="elderly", changes={"code": "elderly-free"})
    assert LegRule.objects.filter(code="elderly-free").exists()
    services.visitor_policy_change(
        tenant=city, actor=ACTOR, scope="network", key="yrd", changes={"policy": "no_concession"}
    )
    policy.refresh_from_db()
    assert policy.policy == "no_concession"
    services.cap_change(tenant=city, actor=ACTOR, code="day", changes={"period": "month", "amount_fen": 9000})
    services.quota_change(tenant=city, actor=ACTOR, code="free30", changes={"rides": 20})
    services.transfer_rule_change(tenant=city, actor=ACTOR, code="bus-bus", changes={"within_minutes": 60})
    services.route_set_change(tenant=city, actor=ACTOR, code="r1-499", changes={"excluded": []})
    assert TransferRule.objects.get().within_minutes == 60 and Quota.objects.get().rides == 20

    services.leg_rule_delete(tenant=city, actor=ACTOR, code="elderly-free")
    services.transfer_rule_delete(tenant=city, actor=ACTOR, code="bus-bus")
    services.fare_product_delete(tenant=city, actor=ACTOR, code="bus")
    services.cap_delete(tenant=city, actor=ACTOR, code="day")
    services.quota_delete(tenant=city, actor=ACTOR, code="free30")
    services.timeframe_delete(tenant=city, actor=ACTOR, code="peak")
    services.route_set_delete(tenant=city, actor=ACTOR, code="r1-499")
    services.visitor_policy_delete(tenant=city, actor=ACTOR, scope="network", key="yrd")
    for model in (RouteSet, Quota, Timeframe, TimeframeWindow, FareProduct, LegRule, TransferRule, Cap):
        assert not model.objects.exists(), model
    assert not VisitorPolicy.objects.filter(scope="network").exists()
    (entry,) = _entries("fares.route_set.delete")
    assert json.loads(entry.payload)["ranges"] == "1-499"
    assert len(_entries("fares.visitor_policy.delete")) == 1


@pytest.mark.parametrize(
    ("create", "fields", "field", "words"),
    [
        (services.route_set_create, {"code": "night", "ranges": "499-1"}, "ranges", "low-high"),
        (services.route_set_create, {"code": "none"}, None, "needs routes or ranges"),
        (services.route_set_create, {"code": "bad code!", "routes": ["1"]}, "code", "slug"),
        (services.quota_create, {"code": "q", "rides": -1}, "rides", "greater than or equal to 0"),
        (services.fare_product_create, {"code": "p", "amount_fen": -1}, "amount_fen", "negative"),
        (
            services.fare_product_create,
            {"code": "p", "amount_fen": 1, "route_set": "nope"},
            "route_set",
            "nope",
        ),
        (
            services.fare_product_create,
            {"code": "p", "amount_fen": 1, "valid_from": "2027-01-01", "valid_to": "2026-01-01"},
            "valid_to",
            "before valid_from",
        ),
        (services.fare_product_create, {"code": "p", "amount_fen": 1, "fare": 2}, "fare", "no field fare"),
        (services.leg_rule_create, {"code": "x", "categories": ["pensioner"]}, "categories", "pensioner"),
        (services.leg_rule_create, {"code": "x", "kind": "fixed", "value": -5}, "value", "negative"),
        (services.leg_rule_create, {"code": "x", "kind": "percent", "value": 12000}, "value", "above base"),
        (services.leg_rule_create, {"code": "x", "kind": "half"}, "kind", "not a valid choice"),
        (services.cap_create, {"code": "c", "amount_fen": -1}, "amount_fen", "negative"),
        (services.cap_create, {"code": "c", "amount_fen": 1, "media": ["09"]}, "media", "unknown: 09"),
        (services.transfer_rule_create, {"code": "t", "transfer_type": 5}, "transfer_type", "choice"),
        (
            services.visitor_policy_create,
            {"scope": "tenant", "key": "hz", "policy": "host_rules"},
            "key",
            "6-digit",
        ),
    ],
)
def test_refusals_name_the_field_and_write_nothing(city, create, fields, field, words):
    before = AuditEntry.objects.count(), VisitorPolicy.objects.count()
    with pytest.raises(DomainError) as refused:
        create(tenant=city, actor=ACTOR, fields=fields)
    assert refused.value.field == field and words in str(refused.value), str(refused.value)
    if field:
        assert field in str(refused.value)
    assert (AuditEntry.objects.count(), VisitorPolicy.objects.count()) == before
    for model in (RouteSet, Quota, FareProduct, LegRule, TransferRule, Cap):
        assert not model.objects.exists()


def test_duplicate_code_and_bad_window_refused_with_nothing_written(city):
    _routes(city)
    with pytest.raises(DomainError) as refused:
        _routes(city)
    assert refused.value.field == "code" and "already exists" in str(refused.value)
    default = {"scope": "default", "key": "", "policy": "host_rules"}
    services.visitor_policy_create(tenant=city, actor=ACTOR, fields=default)
    with pytest.raises(DomainError) as refused:
        services.visitor_policy_create(
            tenant=city, actor=ACTOR, fields={**default, "policy": "no_concession"}
        )
    assert "already exists" in str(refused.value) and VisitorPolicy.objects.get().policy == "host_rules"
    with pytest.raises(DomainError) as refused:
        services.timeframe_create(
            tenant=city,
            actor=ACTOR,
            fields={"code": "peak"},
            windows=[{"days": [1], "start": "07:00", "end": "09:00"}, {"days": [8], "start": "07:00"}],
        )
    assert refused.value.field == "days" and "window 2" in str(refused.value)
    assert not Timeframe.objects.exists() and not TimeframeWindow.objects.exists()
    assert not _entries("fares.timeframe.create")


def test_change_refused_leaves_the_row_and_windows_as_they_were(city):
    services.timeframe_create(
        tenant=city,
        actor=ACTOR,
        fields={"code": "peak"},
        windows=[{"days": [1], "start": "07:00", "end": "09:00"}],
    )
    with pytest.raises(DomainError):
        services.timeframe_change(
            tenant=city,
            actor=ACTOR,
            code="peak",
            changes={"name": "rush"},
            windows=[{"days": [1], "start": "09:00", "end": "07:00"}],
        )
    peak = Timeframe.objects.get()
    assert peak.name == "" and [(w.start, w.end) for w in peak.windows.all()] == [("07:00", "09:00")]
    services.timeframe_change(
        tenant=city,
        actor=ACTOR,
        code="peak",
        changes={"name": "rush"},
        windows=[{"days": [6, 7], "start": "10:00", "end": "12:00"}],
    )
    assert [(w.days, w.start) for w in peak.windows.all()] == [([6, 7], "10:00")]
    (entry,) = _entries("fares.timeframe.change")
    assert set(json.loads(entry.payload)["changed"]) == {"name", "windows"}
    with pytest.raises(DomainError) as refused:
        services.leg_rule_change(tenant=city, actor=ACTOR, code="nope", changes={})
    assert isinstance(refused.value, NotFound) and refused.value.field == "code"


def test_rows_in_use_are_not_deleted(city):
    _routes(city)
    services.fare_product_create(
        tenant=city, actor=ACTOR, fields={"code": "bus", "route_set": "r1-499", "amount_fen": 200}
    )
    with pytest.raises(DomainError) as refused:
        services.route_set_delete(tenant=city, actor=ACTOR, code="r1-499")
    assert refused.value.code == "in_use" and "bus" in str(refused.value)
    assert RouteSet.objects.exists() and not _entries("fares.route_set.delete")


def test_a_county_is_refused_every_edit(tenant):
    county = tenant("tonglu")
    with tenant_context(county):
        before = AuditEntry.objects.count()
        attempts = [
            lambda: services.route_set_create(
                tenant=county, actor=ACTOR, fields={"code": "x", "routes": ["1"]}
            ),
            lambda: services.leg_rule_change(tenant=county, actor=ACTOR, code="x", changes={"value": 1}),
            lambda: services.cap_delete(tenant=county, actor=ACTOR, code="x"),
            lambda: services.timeframe_create(tenant=county, actor=ACTOR, fields={"code": "x"}),
            lambda: services.visitor_policy_create(
                tenant=county, actor=ACTOR, fields={"scope": "default", "policy": "host_rules"}
            ),
        ]
        for attempt in attempts:
            with pytest.raises(DomainError) as refused:
                attempt()
            assert refused.value.code == "county_inherits" and "hangzhou" in str(refused.value)
        assert AuditEntry.objects.count() == before and not RouteSet.objects.exists()


def test_rules_edited_row_by_row_publish_and_quote(city):
    services.visitor_policy_create(
        tenant=city, actor=ACTOR, fields={"scope": "default", "policy": "host_rules"}
    )
    _routes(city)
    services.fare_product_create(
        tenant=city, actor=ACTOR, fields={"code": "bus", "route_set": "r1-499", "amount_fen": 200}
    )
    services.leg_rule_create(
        tenant=city, actor=ACTOR, fields={"code": "card-91", "kind": "percent", "value": 9000, "priority": 10}
    )
    assert selectors.fares_validate(tenant=city) == []
    services.fares_publish(tenant=city, actor=ACTOR, effective_from=dt.datetime(2026, 1, 1, tzinfo=SH))
    quote = selectors.fares_quote(
        tenant=city, service="bus", route="155", at=dt.datetime(2026, 11, 23, 8, 10, tzinfo=SH), scheme="01"
    )
    assert (quote.quote.fare_fen, quote.quote.rule_id, quote.version) == (180, "card-91", 1)
