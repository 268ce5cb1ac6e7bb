"""Departments, service points, data grants with the read log, the onboarding checklist, and a county's
read-only view of its city's card schemes."""

from __future__ import annotations

import datetime as dt

import pytest
from django_tenants.utils import tenant_context

from citycard.platform.errors import DomainError
from citycard.tenants.cards import services as cards
from citycard.tenants.cards.pii import id_number_build
from citycard.tenants.cards.selectors import schemes_visible
from citycard.tenants.departments import services as s
from citycard.tenants.departments.selectors import data_reads, onboarding_checklist

pytestmark = pytest.mark.django_db
AT = dt.datetime(2026, 11, 3, 10, 0, tzinfo=dt.UTC)


def test_department_and_service_point_refusals(tenant):
    with tenant_context(tenant("haiyan")):
        with pytest.raises(DomainError) as info:
            s.department_create(code="hy-x", kind="army", name="X", actor="t")
        assert info.value.field == "kind"
        s.department_create(code="hy-hrss", kind="hrss", name="海盐县人社局", actor="t")
        with pytest.raises(DomainError) as info:
            s.service_point_create(
                department="hy-hrss",
                code="w1",
                name="窗口",
                address="a",
                hours="9-17",
                services=["fly"],
                actor="t",
            )
        assert info.value.field == "services"
        with pytest.raises(DomainError) as info:
            s.department_create(code="hy-hrss", kind="hrss", name="again", actor="t")
        assert info.value.code == "conflict"


def test_county_onboarding_checklist_and_city_schemes_read_only(tenant):
    from citycard.tenants.terminals.services import terminal_register
    from citycard.tenants.terminals.simulate import SimTerminal

    jiaxing, haiyan = tenant("jiaxing"), tenant("haiyan")
    with tenant_context(haiyan):
        todo = {i.key: i.done for i in onboarding_checklist(tenant=haiyan)}
        assert todo == {
            "departments": False,
            "service_points": False,
            "terminals": False,
            "keys": True,
            "card_schemes": False,
        }
    with tenant_context(jiaxing):
        cards.schemes_seed(actor="t")
        cards.schemes_publish(actor="t")
    with tenant_context(haiyan):
        s.department_create(code="hy-trans", kind="transport", name="海盐县交通运输局", actor="t")
        s.service_point_create(
            department="hy-trans",
            code="hy-w1",
            name="海盐市民卡服务窗口",
            address="海盐县武原街道",
            hours="周一至周五 8:30-17:00",
            services=["apply", "loss", "topup"],
            actor="t",
        )
        sim = SimTerminal("HY-BUS-0001", "haiyan")
        terminal_register(
            terminal_id=sim.terminal_id,
            operator="海盐公交",
            department="transport",
            service="bus",
            route="1",
            public_key=sim.public_key,
            actor="t",
        )
        checklist = onboarding_checklist(tenant=haiyan)
        assert all(item.done for item in checklist), checklist
        visible = schemes_visible(tenant=haiyan)
        assert [v["code"] for v in visible] == ["01", "02", "03", "04"]
        assert visible[0]["name_zh"] == "社会保障·市民卡"
        with pytest.raises(DomainError) as info:
            cards.scheme_save(
                code="05", name_zh="县卡", eligibility=["anyone"], applications=["transit"], actor="t"
            )
        assert info.value.code == "county_read_only"
        with pytest.raises(DomainError) as info:
            cards.card_apply(scheme_code="01", cardholder_id=None, actor="t")
        assert info.value.code == "county_read_only"


def test_reads_through_a_grant_are_logged_and_queryable_per_cardholder(tenant):
    with tenant_context(tenant("jiaxing")):
        cards.schemes_seed(actor="t")
        number = id_number_build(division="330402", birth_date=dt.date(1948, 5, 6), sequence=17)
        holder = cards.cardholder_register(
            name="王五",
            id_number=number,
            phone="13900001111",
            local_hukou=True,
            categories=[{"code": "elderly", "valid_from": dt.date(2018, 5, 6)}],
            actor="t",
        )
        s.department_create(code="civil", kind="civil_affairs", name="嘉兴市民政局", actor="t")
        s.department_create(code="bus", kind="transport", name="嘉兴公交", actor="t")
        s.data_grant_create(
            department="civil",
            fields=["name", "id_number", "categories"],
            purpose="敬老补贴核对",
            valid_from=dt.date(2026, 1, 1),
            actor="t",
        )
        got = s.cardholder_read(
            department="civil",
            cardholder_id=holder.pk,
            fields=["id_number", "categories"],
            reader="officer.li",
            reason="2026年11月敬老补贴发放核对",
            at=AT,
        )
        assert got == {"id_number": number, "categories": ["elderly"]}
        with pytest.raises(DomainError) as info:
            s.cardholder_read(
                department="civil",
                cardholder_id=holder.pk,
                fields=["phone"],
                reader="officer.li",
                reason="curious",
                at=AT,
            )
        assert info.value.code == "no_grant"
        with pytest.raises(DomainError):
            s.cardholder_read(
                department="bus", cardholder_id=holder.pk, fields=["name"], reader="x", reason="r", at=AT
            )
        with pytest.raises(DomainError) as info:
            s.cardholder_read(
                department="civil", cardholder_id=holder.pk, fields=["name"], reader="x", reason=" ", at=AT
            )
        assert info.value.field == "reason"
        log = list(data_reads(cardholder_id=holder.pk))
        assert [(r.reader, r.department.code, r.fields, r.reason) for r in log] == [
            ("officer.li", "civil", ["categories", "id_number"], "2026年11月敬老补贴发放核对")
        ]
        grant = log[0].grant
        s.data_grant_revoke(grant_id=grant.pk, actor="t")
        with pytest.raises(DomainError):
            s.cardholder_read(
                department="civil", cardholder_id=holder.pk, fields=["name"], reader="x", reason="r", at=AT
            )
