"""Cross-city medical settlement (异地就医): a Shenzhen hospital treats a Dongguan insured person; the fund
share follows Dongguan's policy over Shenzhen's catalogue (worked examples), Dongguan owes it to
Shenzhen, cleared monthly through the same netting."""

from __future__ import annotations

import datetime as dt
import io
import json
import re

import pytest
from django.core.management import call_command
from django_tenants.utils import tenant_context

from citycard.interop.models import ClearingRecord
from citycard.interop.services.agreements import agreement_set
from citycard.interop.services.cycles import cycle_get_or_create, cycle_run
from citycard.interop.services.messages import outbox_collect
from citycard.platform.errors import DomainError
from citycard.tenants.exchange.models import OutboxMessage
from citycard.tenants.medical.models import Claim, InsuredYear, Policy
from citycard.tenants.medical.selectors import claim_outcome
from citycard.tenants.medical.services import (
    catalogue_item_save,
    claim_price,
    claim_submit,
    insured_year_set_category,
    medical_year_close,
    policy_set,
)

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
        cycle=cycle_get_or_create(network_code="gba", service="medical", business_date=NOV),
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


def test_a_refused_claim_shows_its_refusal_as_label_and_code(medical):
    """The refusal's code stays the machine's word (``--json``, the answer); a person reads its label with
    the code beside it, in the command and the admin (platform/reasons.py)."""
    from django.utils import translation

    from citycard.tenants.medical.admin import ClaimAdmin
    from tests.platform.test_cli_chinese import assert_chinese

    shenzhen, _dongguan, _ = medical
    _claim(shenzhen, card_no("441900", 9998), "R1", [("D001", 1)], dt.date(2026, 11, 4))

    def medical_command(*args: str) -> str:
        out = io.StringIO()
        with translation.override("zh-hans"):
            call_command("medical", "--tenant", "shenzhen", *args, stdout=out)
        return out.getvalue()

    assert_chinese(medical_command("claims"), "未在参保地参保 (not_insured)")
    assert_chinese(medical_command("claim", "shenzhen-R1"), "— 未在参保地参保 (not_insured): ")
    assert json.loads(medical_command("claim", "shenzhen-R1", "--json"))["refusal"] == "not_insured"
    with tenant_context(shenzhen), translation.override("zh-hans"):
        claim = Claim.objects.get(claim_id="shenzhen-R1")
        assert ClaimAdmin.status(None, claim).endswith(": 未在参保地参保 (not_insured)")
    assert not ClearingRecord.objects.filter(kind="claim").exists()  # a refused claim is not cleared


# --- what a claim's lines come to, and when a claim is refused ---------------------------------------------


def _submit(shenzhen, patient, no, items, day, hour=10, now=None):
    with tenant_context(shenzhen):
        return claim_submit(
            claim_no=no,
            card_no=patient,
            department="深圳市人民医院",
            treated_at=at(day, hour),
            items=items,
            actor="hospital",
            now=now or at(day, hour + 1),
        )


def _answer(shenzhen, no, day):
    outbox_collect(tenant=shenzhen, now=at(day, 23))
    with tenant_context(shenzhen):
        return claim_outcome(claim_id=f"shenzhen-{no}")


def test_items_outside_the_catalogue_are_paid_by_the_patient_and_the_rest_is_reimbursed(medical):
    shenzhen, dongguan, patient = medical
    with tenant_context(shenzhen):
        catalogue_item_save(
            code="D009",
            name="停用药",
            category="drug",
            unit_price_fen=999,
            coverage="A",
            active=False,
            actor="t",
        )
    day = dt.date(2026, 11, 3)
    # The deductible (500.00) is met first by a CT-heavy claim so the second one shows the ratio at work.
    _submit(shenzhen, patient, "P0", [("T001", 2)], day)
    _answer(shenzhen, "P0", day)
    items = [
        ("D001", 1),  # 甲 120.00 → eligible 120.00 → 80% = 96.00
        ("X-777", 2, 4550, "自费进口药"),  # outside the catalogue: 91.00 paid by the patient
        ("D009", 1, 999, "停用药"),  # withdrawn: outside the catalogue too
        ("M001", 1),  # 丙 50.00: self-pay
    ]
    claim, created = _submit(shenzhen, patient, "P1", items, day, hour=15)
    assert created
    assert [
        (line["code"], line["outcome"], line["eligible_fen"], line["self_pay_fen"]) for line in claim.items
    ] == [
        ("D001", "covered", 12000, 0),
        ("X-777", "not_in_catalogue", 0, 9100),
        ("D009", "not_in_catalogue", 0, 999),
        ("M001", "self_pay", 0, 5000),
    ]
    answer = _answer(shenzhen, "P1", day)
    assert "rejected" not in answer
    assert (answer["total_fen"], answer["fund_fen"], answer["patient_fen"]) == (27099, 9600, 17499)
    with tenant_context(dongguan):
        adjudicated = Claim.objects.get(claim_id="shenzhen-P1", role="insured")
    assert [line["outcome"] for line in adjudicated.items][1] == "not_in_catalogue"
    assert adjudicated.policy_id is not None and adjudicated.insured_category == "employee"


def test_a_line_outside_the_catalogue_without_a_price_refuses_the_submission_and_writes_nothing(medical):
    shenzhen, _, patient = medical
    with pytest.raises(DomainError) as info:
        _submit(shenzhen, patient, "N1", [("D001", 1), ("X-1", 1)], dt.date(2026, 11, 3))
    assert (info.value.code, info.value.field) == ("price_required", "items")
    with tenant_context(shenzhen):
        assert not Claim.objects.exists() and not OutboxMessage.objects.filter(kind="medical.claim").exists()


def test_submitting_the_same_claim_again_returns_the_first_and_other_content_is_a_conflict(medical):
    shenzhen, _, patient = medical
    day = dt.date(2026, 11, 3)
    first, created = _submit(shenzhen, patient, "R1", [("D001", 1)], day)
    again, created_again = _submit(shenzhen, patient, "R1", [("D001", 1)], day)
    assert created and not created_again and again.pk == first.pk
    with pytest.raises(DomainError) as info:
        _submit(shenzhen, patient, "R1", [("D001", 2)], day)
    assert info.value.code == "conflict"
    with tenant_context(shenzhen):
        assert OutboxMessage.objects.filter(kind="medical.claim").count() == 1


def test_a_claim_that_cannot_be_routed_is_refused_at_submission(medical, tenant):
    shenzhen, _, _ = medical
    day = dt.date(2026, 11, 3)
    for number, code in (
        (card_no("441900", 1)[:-1] + str((int(card_no("441900", 1)[-1]) + 1) % 10), "bad_checksum"),
        (card_no("440300", 1), "not_roaming"),  # a Shenzhen card at a Shenzhen hospital
        (card_no("330100", 1), "no_network"),  # Hangzhou roams in yrd, Shenzhen in gba
        (card_no("990100", 1), "unknown_insured_place"),
    ):
        with pytest.raises(DomainError) as info:
            _submit(shenzhen, number, f"U-{code}", [("D001", 1)], day)
        assert (info.value.code, info.value.field) == (code, "card_no"), number


def test_closed_year_refuses_the_whole_claim_with_the_reason(medical):
    shenzhen, dongguan, patient = medical
    with tenant_context(dongguan):
        policy_set(year=2025, deductible_fen=0, ratios_bps={"drug": 5000}, annual_cap_fen=10**7, actor="t")
        with pytest.raises(DomainError):
            medical_year_close(year=2026, actor="t", now=at(dt.date(2026, 11, 30), 9))  # not over yet
        medical_year_close(year=2025, actor="officer", now=at(dt.date(2026, 1, 20), 9))
    # A claim for treatment on 30 December sent in February: too late.
    _submit(shenzhen, patient, "Y1", [("D001", 1)], dt.date(2025, 12, 30), now=at(dt.date(2026, 2, 2), 9))
    answer = _answer(shenzhen, "Y1", dt.date(2026, 2, 2))
    assert (answer["rejected"], answer["fund_fen"], answer["patient_fen"]) == ("year_closed", 0, 12000)
    assert answer["reason"].startswith("2025 was closed on 2026-01-20")
    with tenant_context(dongguan):
        assert not InsuredYear.objects.filter(card_no=patient, year=2025).exists()


def test_a_resident_is_adjudicated_under_the_residents_policy_and_refused_without_one(medical):
    shenzhen, dongguan, patient = medical
    day = dt.date(2026, 11, 3)
    with tenant_context(dongguan):
        insured_year_set_category(card_no=patient, year=2026, category="resident", actor="officer")
    _submit(shenzhen, patient, "C1", [("D001", 1)], day)
    answer = _answer(shenzhen, "C1", day)
    assert (answer["rejected"], answer["category"]) == ("no_policy", "resident")
    assert "城乡居民医保" in answer["reason"] and "2026-11-03" in answer["reason"]
    with tenant_context(dongguan):
        policy_set(
            category="resident",
            year=2026,
            deductible_fen=0,
            ratios_bps={"drug": 6000},
            annual_cap_fen=10**6,
            actor="t",
        )
    _submit(shenzhen, patient, "C2", [("D001", 1)], day, hour=16)
    answer = _answer(shenzhen, "C2", day)
    assert (answer["fund_fen"], answer["category"]) == (7200, "resident")  # 120.00 × 60%, no deductible


def test_a_policy_changed_from_the_first_of_july_applies_to_later_treatment(medical):
    shenzhen, dongguan, patient = medical
    with tenant_context(dongguan):
        first = Policy.objects.get(category="employee", year=2026)
        policy_set(
            policy_id=first.pk,
            year=2026,
            effective_to=dt.date(2026, 6, 30),
            deductible_fen=0,
            ratios_bps={"drug": 5000},
            annual_cap_fen=10**7,
            actor="t",
        )
        policy_set(
            year=2026,
            effective_from=dt.date(2026, 7, 1),
            deductible_fen=0,
            ratios_bps={"drug": 9000},
            annual_cap_fen=10**7,
            actor="t",
        )
    _submit(shenzhen, patient, "J1", [("D001", 1)], dt.date(2026, 6, 30))
    assert _answer(shenzhen, "J1", dt.date(2026, 6, 30))["fund_fen"] == 6000
    _submit(shenzhen, patient, "J2", [("D001", 1)], dt.date(2026, 7, 1))
    assert _answer(shenzhen, "J2", dt.date(2026, 7, 1))["fund_fen"] == 10800
    with tenant_context(dongguan):
        # Claims were adjudicated under the first half's policy: its amounts and the days it covered stay.
        with pytest.raises(DomainError) as info:
            policy_set(
                policy_id=first.pk,
                year=2026,
                effective_to=dt.date(2026, 6, 30),
                deductible_fen=0,
                ratios_bps={"drug": 7000},
                annual_cap_fen=10**7,
                actor="t",
            )
        assert info.value.code == "policy_in_use"
        with pytest.raises(DomainError) as info:
            policy_set(
                policy_id=first.pk,
                year=2026,
                effective_to=dt.date(2026, 6, 29),
                deductible_fen=0,
                ratios_bps={"drug": 5000},
                annual_cap_fen=10**7,
                actor="t",
            )
        assert (info.value.code, info.value.field) == ("policy_in_use", "effective_to")
        with pytest.raises(DomainError) as info:  # overlapping the second half
            policy_set(
                year=2026,
                effective_from=dt.date(2026, 12, 1),
                deductible_fen=0,
                ratios_bps={},
                annual_cap_fen=0,
                actor="t",
            )
        assert info.value.code == "overlap"


def test_medical_cycles_show_in_clearing_status(medical):
    shenzhen, _, patient = medical
    day = dt.date(2026, 11, 3)
    _submit(shenzhen, patient, "S1", [("T001", 4)], day)
    _answer(shenzhen, "S1", day)
    out = io.StringIO()
    call_command(
        "clearing", "status", "--network", "gba", "--service", "medical", "--date", "2026-11-01", stdout=out
    )
    text = out.getvalue()
    assert (
        "gba" in text and "medical" in text and "valid" in text and "630.00" in text
    )  # (1,200.00 − 500.00) × 90%
    out = io.StringIO()
    call_command("clearing", "status", "--network", "gba", "--service", "medical", stdout=out)
    assert "2026-11-01" in out.getvalue() and "1 · 630.00" in out.getvalue()


def test_the_console_shows_a_claim_with_each_item_and_the_adjudication_per_category(medical):
    from django.test import Client

    from citycard.platform.models import Role
    from citycard.platform.services import user_create

    shenzhen, _dongguan, patient = medical
    _claim(
        shenzhen, patient, "C1", [("D001", 2), ("D002", 3), ("T001", 1), ("M001", 1)], dt.date(2026, 11, 3)
    )
    clerk = Client()
    clerk.force_login(
        user_create(username="clerk-med", role=Role.CLEARING_STAFF, password="a-long-password-1")
    )
    html = clerk.get("/console/records/shenzhen-C1/", HTTP_HOST="localhost").content.decode()
    assert 'id="claim"' in html and "深圳市人民医院" in html
    # Per item: 甲 covered in full, 乙 with its 10% self-pay, 丙 self-paid (the treatment place's pricing).
    eligible = [int(v) for v in re.findall(r'class="claim-line" data-eligible="(\d+)"', html)]
    assert eligible == [24000, 27000, 30000, 0]
    assert [int(v) for v in re.findall(r'class="claim-category" data-fund="(\d+)"', html)] == [800, 27000]
    assert 'id="claim-fund" data-fen="27800"' in html
