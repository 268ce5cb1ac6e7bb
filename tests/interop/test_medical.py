"""Cross-city medical settlement (异地就医): a Shenzhen hospital treats a Dongguan insured person; the fund
share follows Dongguan's policy over Shenzhen's catalogue (worked examples), Dongguan owes it to
Shenzhen, cleared monthly through the same netting."""

from __future__ import annotations

import datetime as dt

import pytest
from django_tenants.utils import tenant_context

from citycard.interop.models import ClearingRecord
from citycard.interop.services import agreement_set, cycle_get, cycle_run, outbox_collect
from citycard.tenants.medical.models import InsuredYear
from citycard.tenants.medical.selectors import claim_outcome
from citycard.tenants.medical.services import catalogue_item_save, claim_price, claim_submit, policy_set

from .conftest import at, card_no, cards_known

pytestmark = pytest.mark.django_db
NOV = dt.date(2026, 11, 1)


@pytest.fixture
def medical(tenant):
    agreement_set(network_code="gba", service="medical", valid_from=dt.date(2020, 1, 1), actor="test")
    shenzhen, dongguan = tenant("shenzhen"), tenant("dongguan")
    with tenant_context(shenzhen):
        for code, name, category, price, coverage, self_pay in (
            ("D001", "阿莫西林", "drug", 12000, "A", 0),
            ("D002", "头孢", "drug", 10000, "B", 1000),
            ("D003", "odd price", "drug", 12345, "B", 1000),
            ("T001", "CT", "treatment", 30000, "A", 0),
            ("M001", "special material", "material", 5000, "C", 0),
        ):
            catalogue_item_save(
                code=code,
                name=name,
                category=category,
                unit_price_fen=price,
                coverage=coverage,
                self_pay_bps=self_pay,
                actor="test",
            )
    with tenant_context(dongguan):
        policy_set(
            year=2026,
            deductible_fen=50000,
            ratios_bps={"drug": 8000, "treatment": 9000},
            annual_cap_fen=100000,
            actor="test",
        )
    patient = card_no("441900", 4242)
    cards_known(dongguan, [patient])
    return shenzhen, dongguan, patient


def _claim(shenzhen, patient, no, items, day):
    with tenant_context(shenzhen):
        claim_submit(
            claim_no=no,
            card_no=patient,
            department="深圳市人民医院",
            treated_at=at(day, 10),
            items=items,
            actor="hospital",
            now=at(day, 11),
        )
    outbox_collect(tenant=shenzhen, now=at(day, 12))
    with tenant_context(shenzhen):
        return claim_outcome(claim_id=f"shenzhen-{no}")


def test_catalogue_pricing_with_half_up_self_pay(medical):
    shenzhen, _, _ = medical
    with tenant_context(shenzhen):
        priced = claim_price(items=[("D003", 1), ("M001", 2), ("D001", 1)])
    # 乙类 12345 with a 10% first self-pay: 1234.5 → 1235, eligible 11110; 丙类 not eligible at all.
    assert priced.total_fen == 12345 + 10000 + 12000
    assert priced.eligible == {"drug": 11110 + 12000}


def test_deductible_ratio_and_cap_worked_examples(medical):
    shenzhen, dongguan, patient = medical
    # Claim 1: drugs 24000 (甲) + 30000 (乙, 10% self-pay → 27000), CT 30000, material 5000 (丙).
    # Eligible: drug 51000, treatment 30000. The 50000 deductible comes off drug first (categories by name):
    # drug 1000 × 80% = 800, treatment 30000 × 90% = 27000 → fund 27800; the patient pays 89000 − 27800.
    one = _claim(
        shenzhen, patient, "C1", [("D001", 2), ("D002", 3), ("T001", 1), ("M001", 1)], dt.date(2026, 11, 3)
    )
    assert (one["total_fen"], one["fund_fen"], one["patient_fen"]) == (89000, 27800, 61200)
    assert one["detail"]["categories"]["drug"] == {
        "eligible_fen": 51000,
        "deductible_fen": 50000,
        "ratio_bps": 8000,
        "fund_fen": 800,
    }
    # Claim 2: four CTs, 120000 eligible, deductible already met: 108000 before the cap; the 100000 annual
    # cap leaves 72200 → fund 72200, patient 47800.
    two = _claim(shenzhen, patient, "C2", [("T001", 4)], dt.date(2026, 11, 10))
    assert (two["fund_fen"], two["patient_fen"], two["detail"]["before_cap_fen"]) == (72200, 47800, 108000)
    # Claim 3: the cap is used up: the patient pays everything, and no clearing record is made.
    three = _claim(shenzhen, patient, "C3", [("D001", 1)], dt.date(2026, 11, 20))
    assert (three["fund_fen"], three["patient_fen"]) == (0, 12000)
    with tenant_context(dongguan):
        year = InsuredYear.objects.get(card_no=patient, year=2026)
    assert (year.deductible_used_fen, year.fund_paid_fen) == (50000, 100000)
    # Monthly cycle: Dongguan owes Shenzhen the fund shares it advanced.
    cycle = cycle_run(
        cycle=cycle_get(network_code="gba", service="medical", business_date=NOV),
        now=at(dt.date(2026, 12, 1), 5),
    )
    assert sorted(ClearingRecord.objects.filter(cycle=cycle).values_list("record_id", "amount_fen")) == [
        ("shenzhen-C1", 27800),
        ("shenzhen-C2", 72200),
    ]
    assert dict(cycle.positions.values_list("participant", "net_fen")) == {
        "dongguan": -100000,
        "shenzhen": 100000,
    }
    assert cycle.state == "settled" and cycle.instructions.count() == 2


def test_unknown_insured_or_no_policy_pays_nothing(medical, tenant):
    shenzhen, dongguan, _ = medical
    stranger = card_no("441900", 9999)  # not a Dongguan card
    out = _claim(shenzhen, stranger, "X1", [("D001", 1)], dt.date(2026, 11, 4))
    assert (out["rejected"], out["fund_fen"], out["patient_fen"]) == ("not_insured", 0, 12000)
    patient = card_no("441900", 4243)
    cards_known(dongguan, [patient])
    later = _claim(shenzhen, patient, "X2", [("D001", 1)], dt.date(2025, 6, 4))
    assert later["rejected"] == "no_policy"
    assert not ClearingRecord.objects.filter(kind="claim").exists()
