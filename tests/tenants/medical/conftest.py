"""Dongguan as an insured place and Shenzhen as a treatment place, with their city administrators."""

from __future__ import annotations

import datetime as dt

import pytest
from django_tenants.utils import tenant_context

from citycard.platform import services as platform
from citycard.platform.models import Role
from citycard.tenants.terminals.simulate import card_number

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
DG = {"HTTP_HOST": "dongguan.localhost"}
SZ = {"HTTP_HOST": "shenzhen.localhost"}


def at(day: dt.date, hour: int) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=SHANGHAI)


@pytest.fixture
def dongguan_card(tenant):
    """An active Dongguan card (城市通卡, as the clearing tests use)."""
    from tests.interop.conftest import cards_known

    number = card_number("441900", 5150)
    cards_known(tenant("dongguan"), [number])
    return number


def signed_in(client, tenant_code: str, role: str = Role.CITY_ADMIN):
    user = platform.user_create(
        username=f"{tenant_code}-{role}",
        role=role,
        tenant_code=tenant_code,
        password="pw-123456789",
        actor="t",
    )
    client.force_login(user)
    return client


@pytest.fixture
def in_dongguan(tenant):
    with tenant_context(tenant("dongguan")):
        yield tenant("dongguan")


@pytest.fixture
def in_shenzhen(tenant):
    with tenant_context(tenant("shenzhen")):
        yield tenant("shenzhen")


NOV3 = dt.date(2026, 11, 3)


@pytest.fixture
def world(tenant, dongguan_card):
    """The gba medical agreement; Shenzhen's catalogue (D001 甲 120.00, D002 乙 100.00 with 10% self-pay,
    T001 甲 CT 300.00, M001 丙 50.00); Dongguan's 2026 employees' policy (起付线 100.00, drug 80%,
    treatment 90%, 封顶线 1,000.00); one claim of the Dongguan card at a Shenzhen hospital, adjudicated:
    ``shenzhen-W1``, drug 120.00 + CT 300.00 + an item outside the catalogue 30.00 = 450.00: the 起付线
    takes 100.00 of drug, 20.00 × 80% + 300.00 × 90% = 286.00 from the fund, 164.00 for the patient."""
    from citycard.interop.services.agreements import agreement_set
    from citycard.interop.services.messages import outbox_collect
    from citycard.tenants.medical import services

    agreement_set(network_code="gba", service="medical", valid_from=dt.date(2020, 1, 1), actor="test")
    shenzhen, dongguan = tenant("shenzhen"), tenant("dongguan")
    with tenant_context(shenzhen):
        for code, name, category, price, coverage, self_pay in (
            ("D001", "阿莫西林", "drug", 12000, "A", 0),
            ("D002", "头孢", "drug", 10000, "B", 1000),
            ("T001", "CT", "treatment", 30000, "A", 0),
            ("M001", "进口耗材", "material", 5000, "C", 0),
        ):
            services.catalogue_item_save(
                code=code,
                name=name,
                category=category,
                unit_price_fen=price,
                coverage=coverage,
                self_pay_bps=self_pay,
                actor="test",
            )
    with tenant_context(dongguan):
        services.policy_set(
            year=2026,
            deductible_fen=10000,
            ratios_bps={"drug": 8000, "treatment": 9000},
            annual_cap_fen=100000,
            actor="test",
        )
    with tenant_context(shenzhen):
        services.claim_submit(
            claim_no="W1",
            card_no=dongguan_card,
            department="深圳市人民医院",
            treated_at=at(NOV3, 10),
            items=[("D001", 1), ("T001", 1), ("X-9", 1, 3000, "自费项目")],
            actor="hospital",
            now=at(NOV3, 11),
        )
    outbox_collect(tenant=shenzhen, now=at(NOV3, 12))
    return shenzhen, dongguan, dongguan_card
