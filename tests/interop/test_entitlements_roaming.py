"""Entitlements across cities (权益互认): a Jiaxing elderly visitor enters a Hangzhou park with the card and
with the citizen code, answered from Jiaxing's signed entitlements through envelopes, only for the types
the Yangtze Delta network recognises; the read lands in the visitor's access log at home."""

from __future__ import annotations

import datetime as dt

import pytest
from django_tenants.utils import tenant_context

from citycard.interop.entitlements import acceptance_decide_anywhere, entitlement_recognition_set
from citycard.tenants.departments import services as d
from citycard.tenants.entitlements import services as s
from tests.tenants.conftest import new_id

pytestmark = pytest.mark.django_db
AT = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).replace(microsecond=0)


def _elderly_free_entry(point: str | None, prefix: str) -> None:
    d.department_create(code=f"{prefix}-parks", kind="culture_tourism", name=f"{prefix} 园文局", actor="t")
    if point:
        d.service_point_create(
            department=f"{prefix}-parks",
            code=point,
            name="公园",
            address="a",
            hours="6-22",
            services=["entry"],
            actor="t",
        )
        d.data_grant_create(
            department=f"{prefix}-parks",
            fields=["name"],
            purpose="核验",
            valid_from=dt.date(2020, 1, 1),
            actor="t",
        )
    s.entitlement_type_create(
        role="city_admin",
        code="elderly-free-entry",
        name="老年人免费游园",
        department=f"{prefix}-parks",
        categories=["elderly"],
        service_points=[point] if point else [],
        auto_grant=True,
        quota_period="day",
        quota=1,
        actor="t",
    )
    s.entitlement_type_approve(code="elderly-free-entry", actor="city-admin", role="city_admin")


@pytest.fixture
def visitor(tenant):
    """A Jiaxing elderly cardholder (free park entry at home) and a Hangzhou park gate."""
    from citycard.tenants.cards.services import card_issue_now, cardholder_register, schemes_seed

    with tenant_context(tenant("jiaxing")):
        schemes_seed(actor="t")
        _elderly_free_entry(None, "jx")
        holder = cardholder_register(
            name="沈阿婆",
            id_number=new_id("330402", dt.date(1948, 2, 2)),
            local_hukou=True,
            categories=[{"code": "elderly", "valid_from": dt.date(2008, 3, 1)}],
            actor="t",
        )
        card = card_issue_now(scheme_code="01", cardholder_id=holder.pk, actor="t")
    with tenant_context(tenant("hangzhou")):
        schemes_seed(actor="t")
        _elderly_free_entry("hz-west-lake", "hz")
    return holder, card


def test_jiaxing_elderly_visitor_enters_a_hangzhou_park_with_card_and_code(tenant, visitor):
    from citycard.tenants.cards.selectors import cardholder_access_log
    from citycard.tenants.entitlements.acceptance import citizen_code_issue

    holder, card = visitor
    with tenant_context(tenant("hangzhou")):
        before = acceptance_decide_anywhere(
            service_point="hz-west-lake", card_no=card.card_no, at=AT, reader="gate"
        )
    assert (before.allowed, before.reason) == (False, "not_entitled")  # not recognised in yrd yet
    entitlement_recognition_set(
        network_code="yrd",
        type_codes=["elderly-free-entry"],
        valid_from=dt.date(2026, 1, 1),
        actor="yrd-operator",
    )
    with tenant_context(tenant("hangzhou")):
        yes = acceptance_decide_anywhere(
            service_point="hz-west-lake", card_no=card.card_no, at=AT, reader="gate"
        )
        assert (yes.allowed, yes.home_tenant, yes.masked_name, yes.remaining) == (True, "jiaxing", "沈**", 0)
        again = acceptance_decide_anywhere(
            service_point="hz-west-lake", card_no=card.card_no, at=AT, reader="gate"
        )
        assert again.reason == "quota_used_up"
    with tenant_context(tenant("jiaxing")):
        code = citizen_code_issue(card_no=card.card_no, at=AT + dt.timedelta(days=1))
        log = cardholder_access_log(cardholder_id=holder.pk)
    assert [(e.channel, e.under) for e in log if e.channel == "interop"] == [("interop", "hangzhou")] * 2
    with tenant_context(tenant("hangzhou")):
        tomorrow = AT + dt.timedelta(days=1, seconds=3)
        by_code = acceptance_decide_anywhere(
            service_point="hz-west-lake", code=code, at=tomorrow, reader="gate"
        )
        assert (by_code.allowed, by_code.home_tenant) == (True, "jiaxing")
        replayed = acceptance_decide_anywhere(
            service_point="hz-west-lake", code=code, at=tomorrow, reader="gate"
        )
        assert replayed.reason == "code_replayed"


def test_a_hotlisted_visitor_card_is_refused_by_its_home_answer(tenant, visitor):
    from citycard.tenants.cards.services import card_report_lost

    _holder, card = visitor
    entitlement_recognition_set(
        network_code="yrd", type_codes=["elderly-free-entry"], valid_from=dt.date(2026, 1, 1), actor="op"
    )
    with tenant_context(tenant("jiaxing")):
        card_report_lost(card_no=card.card_no, actor="t", at=AT - dt.timedelta(hours=1))
    with tenant_context(tenant("hangzhou")):
        no = acceptance_decide_anywhere(
            service_point="hz-west-lake", card_no=card.card_no, at=AT, reader="gate"
        )
    assert (no.allowed, no.reason, no.masked_name) == (False, "card_hotlisted", "")


def test_a_county_library_accepts_its_citys_library_card_answered_by_the_city(tenant):
    from citycard.tenants.cards.services import card_issue_now, cardholder_register, schemes_seed

    with tenant_context(tenant("hangzhou")):
        schemes_seed(actor="t")
        d.department_create(code="hz-library", kind="culture_tourism", name="杭州图书馆", actor="t")
        s.entitlement_type_create(
            role="city_admin",
            code="library-borrow",
            name="图书借阅",
            department="hz-library",
            residence=["local_hukou"],
            auto_grant=True,
            actor="t",
        )
        s.entitlement_type_approve(code="library-borrow", actor="city-admin", role="city_admin")
        holder = cardholder_register(
            name="方卫东", id_number=new_id("330122", dt.date(1979, 8, 8)), local_hukou=True, actor="t"
        )
        card = card_issue_now(scheme_code="01", cardholder_id=holder.pk, actor="t")
    with tenant_context(tenant("tonglu")):
        d.department_create(
            code="tl-library", kind="culture_tourism", name="桐庐县图书馆", actor="county-officer"
        )
        d.service_point_create(
            department="tl-library",
            code="tl-library-desk",
            name="桐庐县图书馆",
            address="a",
            hours="9-17",
            services=["entry"],
            actor="county-officer",
        )
        d.data_grant_create(
            department="tl-library",
            fields=["name"],
            purpose="借阅核验",
            valid_from=dt.date(2020, 1, 1),
            actor="t",
        )
        s.entitlement_type_create(
            role="county_officer",
            code="library-borrow",
            name="图书借阅（通借通还）",
            department="tl-library",
            service_points=["tl-library-desk"],
            actor="county-officer",
        )
        s.entitlement_type_approve(code="library-borrow", actor="county-officer", role="county_officer")
        yes = acceptance_decide_anywhere(
            service_point="tl-library-desk", card_no=card.card_no, at=AT, reader="desk"
        )
    assert (yes.allowed, yes.home_tenant, yes.masked_name) == (True, "hangzhou", "方**")
