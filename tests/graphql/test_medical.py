"""A hospital's partner app submits cross-city claims (异地就医) on its city's endpoint and reads their
outcome: errors as data with codes, idempotent by the hospital's claim id, the scope medical:claims."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from pathlib import Path

import pytest
from django.core.management import call_command
from django_tenants.utils import tenant_context

from citycard.interop.services.messages import outbox_collect
from citycard.platform.audit.models import AuditEntry
from citycard.platform.scopes import Scope
from citycard.tenants.terminals.simulate import card_number
from tests.tenants.medical.conftest import NOV3, at

from .conftest import codes_of, data_of, gql, issue

pytestmark = pytest.mark.django_db

SUBMIT = """mutation($id: String!, $card: String!, $at: DateTime!, $items: [MedicalClaimItemInput!]!) {
  medicalClaimSubmit(claimId: $id, cardNumber: $card, treatedAt: $at, items: $items) {
    alreadySubmitted
    claim { claimId cardNumber hospital totalFen eligibleFen status fundFen patientFen
            lines { code name category itemClass quantity unitPriceFen amountFen eligibleFen selfPayFen outcome } }
    errors { field message code }
} }"""
CLAIM = """query($id: String!) { medicalClaim(claimId: $id) {
  claimId status totalFen fundFen patientFen refusal refusalReason annualCapLeftFen
  adjudication { category eligibleFen deductibleFen ratioBps fundFen }
} }"""
ITEMS = [
    {"code": "D001", "quantity": 1},
    {"code": "T001", "quantity": 1},
    {"code": "X-9", "quantity": 2, "unitPriceFen": 1500, "name": "自费进口敷料"},
]


def submit(client, token, claim_id, card, items=ITEMS, treated=None):
    treated = treated or at(NOV3, 9).isoformat()
    response = gql(
        client, "shenzhen", SUBMIT, {"id": claim_id, "card": card, "at": treated, "items": items}, token=token
    )
    return data_of(response)["medicalClaimSubmit"]


def test_a_hospital_submits_a_claim_and_reads_its_outcome(client, tenant, world):
    shenzhen, _, card = world
    token = issue("shenzhen", [Scope.MEDICAL_CLAIMS], name="深圳市人民医院 HIS")
    out = submit(client, token, "ZY-2026-0001", card)
    assert out["errors"] == [] and out["alreadySubmitted"] is False
    claim = out["claim"]
    assert (claim["claimId"], claim["cardNumber"], claim["hospital"]) == (
        "ZY-2026-0001",
        card,
        "深圳市人民医院 HIS",
    )
    assert (claim["totalFen"], claim["eligibleFen"], claim["status"]) == (45000, 42000, "SUBMITTED")
    assert claim["fundFen"] is None and claim["patientFen"] is None
    assert [
        (line["code"], line["itemClass"], line["outcome"], line["selfPayFen"]) for line in claim["lines"]
    ] == [
        ("D001", "A", "COVERED", 0),
        ("T001", "A", "COVERED", 0),
        ("X-9", None, "NOT_IN_CATALOGUE", 3000),
    ]
    # The platform collects the outbox; Dongguan adjudicates: its 起付线 (100.00) is used already by the
    # fixture's claim, so drug 120.00 × 80% + CT 300.00 × 90% = 366.00.
    outbox_collect(tenant=shenzhen)  # now: the key signed its claim now
    result = data_of(gql(client, "shenzhen", CLAIM, {"id": "ZY-2026-0001"}, token=token))["medicalClaim"]
    assert (result["status"], result["fundFen"], result["patientFen"]) == ("ADJUDICATED", 36600, 8400)
    assert result["adjudication"] == [
        {"category": "DRUG", "eligibleFen": 12000, "deductibleFen": 0, "ratioBps": 8000, "fundFen": 9600},
        {
            "category": "TREATMENT",
            "eligibleFen": 30000,
            "deductibleFen": 0,
            "ratioBps": 9000,
            "fundFen": 27000,
        },
    ]
    assert result["annualCapLeftFen"] == 100000 - 28600 and result["refusal"] is None
    with tenant_context(shenzhen):
        reads = [json.loads(e.payload) for e in AuditEntry.objects.filter(action="graphql.read")]
        submitted = AuditEntry.objects.get(action="medical.claim_submit", object_id__endswith="ZY-2026-0001")
    assert submitted.actor.startswith("apikey:")
    assert any(r["type"] == "card" and r["ids"] == [card] for read in reads for r in read["reads"])


def test_a_retry_returns_the_first_claim_and_other_content_is_a_conflict(client, world):
    _, _, card = world
    token = issue("shenzhen", [Scope.MEDICAL_CLAIMS])
    first = submit(client, token, "R-1", card)
    again = submit(client, token, "R-1", card)
    assert again["errors"] == [] and again["alreadySubmitted"] is True and again["claim"] == first["claim"]
    changed = submit(client, token, "R-1", card, items=ITEMS[:1])
    assert changed["claim"] is None
    assert [(e["code"], e["field"]) for e in changed["errors"]] == [("CONFLICT", "claimId")]
    # Claim ids are per key: another hospital's R-1 is its own claim.
    other = submit(client, issue("shenzhen", [Scope.MEDICAL_CLAIMS], name="另一家医院"), "R-1", card)
    assert other["errors"] == [] and other["alreadySubmitted"] is False
    assert (
        data_of(gql(client, "shenzhen", CLAIM, {"id": "R-1"}, token=token))["medicalClaim"]["totalFen"]
        == 45000
    )


@pytest.mark.parametrize(
    ("card", "items", "code", "field"),
    [
        ("DG", [{"code": "X-1", "quantity": 1}], "PRICE_REQUIRED", "items"),
        ("DG", [{"code": "D001", "quantity": 0}], "INVALID", "items"),
        ("BAD", ITEMS, "BAD_CHECKSUM", "cardNumber"),
        (card_number("440300", 77), ITEMS, "NOT_ROAMING", "cardNumber"),
        (card_number("330100", 77), ITEMS, "NO_NETWORK", "cardNumber"),
        (card_number("990100", 77), ITEMS, "UNKNOWN_INSURED_PLACE", "cardNumber"),
    ],
)
def test_a_claim_that_cannot_be_routed_or_priced_is_refused_as_data(
    client, tenant, world, card, items, code, field
):
    shenzhen, _, dg_card = world
    if card == "DG":
        card = dg_card
    elif card == "BAD":
        card = dg_card[:-1] + str((int(dg_card[-1]) + 1) % 10)
    token = issue("shenzhen", [Scope.MEDICAL_CLAIMS])
    out = submit(client, token, f"E-{code}", card, items=items)
    assert out["claim"] is None and [(e["code"], e["field"]) for e in out["errors"]] == [(code, field)]
    assert out["errors"][0]["message"]
    with tenant_context(shenzhen):
        assert not AuditEntry.objects.filter(
            action="medical.claim_submit", object_id__endswith=f"E-{code}"
        ).exists()


def test_the_insured_places_refusal_comes_back_with_its_reason(client, tenant, world):
    shenzhen, _, _ = world
    token = issue("shenzhen", [Scope.MEDICAL_CLAIMS])
    stranger = card_number("441900", 9_999)  # a valid Dongguan number Dongguan never issued
    assert submit(client, token, "S-1", stranger)["errors"] == []
    outbox_collect(tenant=shenzhen)  # now: the key signed its claim now
    result = data_of(gql(client, "shenzhen", CLAIM, {"id": "S-1"}, token=token))["medicalClaim"]
    assert (result["status"], result["refusal"], result["fundFen"], result["patientFen"]) == (
        "REFUSED",
        "NOT_INSURED",
        0,
        45000,
    )
    assert result["refusalReason"] == f"card {stranger} is not insured here"


def test_without_the_scope_a_key_gets_permission_denied(client, world):
    _, _, card = world
    token = issue("shenzhen", [Scope.CARDS_READ])
    response = gql(
        client,
        "shenzhen",
        SUBMIT,
        {"id": "P-1", "card": card, "at": at(NOV3, 9).isoformat(), "items": ITEMS},
        token=token,
    )
    assert (
        codes_of(response) == ["PERMISSION_DENIED"] and response.json()["data"]["medicalClaimSubmit"] is None
    )
    response = gql(client, "shenzhen", CLAIM, {"id": "P-1"}, token=token)
    assert codes_of(response) == ["PERMISSION_DENIED"] and response.json()["data"]["medicalClaim"] is None


def test_query_counts_do_not_grow_with_lines_or_aliases(client, world):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    _, _, card = world
    token = issue("shenzhen", [Scope.MEDICAL_CLAIMS])
    submit(client, token, "Q-1", card)
    submit(client, token, "Q-2", card, items=ITEMS * 20)
    one = '{ a: medicalClaim(claimId: "Q-1") { status fundFen lines { code } adjudication { fundFen } } }'
    two = (
        '{ a: medicalClaim(claimId: "Q-1") { status fundFen lines { code } adjudication { fundFen } } '
        'b: medicalClaim(claimId: "Q-2") { status fundFen lines { code } adjudication { fundFen } } }'
    )
    counts = []
    for query in (one, two):
        with CaptureQueriesContext(connection) as queries:
            data_of(gql(client, "shenzhen", query, token=token))
        counts.append(len(queries.captured_queries))
    # 5 fixed (search paths, domain, key, rate counter), the claim with its answer (one query each), and
    # the read's audit entry (5 more: one entry per request).
    assert counts == [5 + 1 + 5, 5 + 2 + 5]


# --- docs/medical.md: its catalogue file, policy and GraphQL examples run, with its worked figures ---------

DOC = Path(__file__).resolve().parents[2] / "docs" / "medical.md"


def test_the_walk_through_of_docs_medical_runs_with_its_figures(client, tenant, dongguan_card):
    from citycard.interop.services.agreements import agreement_set
    from citycard.tenants.medical import services

    text = DOC.read_text(encoding="utf-8")
    assert card_number("441900", 5150) == dongguan_card and dongguan_card in text
    agreement_set(network_code="gba", service="medical", valid_from=dt.date(2020, 1, 1), actor="test")
    catalogue = re.search(r"```\n(code,name,category,unit_price_fen.*?)```", text, flags=re.S).group(1)
    with tenant_context(tenant("shenzhen")):
        report = services.catalogue_import(text=catalogue, source="docs/medical.md", actor="test")
    assert (report.created, report.errors) == (4, [])
    out = io.StringIO()
    call_command(
        "medical", "--tenant", "dongguan", "policy", "set", "--category", "employee", "--year", "2026",
        "--deductible", "500.00", "--cap", "1000.00", "--ratio", "drug=80", "--ratio", "treatment=90",
        "--ratio", "material=70", stdout=out,
    )  # fmt: skip
    token = issue("shenzhen", [Scope.MEDICAL_CLAIMS], name="深圳市人民医院 HIS")
    submit_doc, outcome_doc = re.findall(r"```graphql medical\n(.*?)```", text, flags=re.S)
    submitted = data_of(gql(client, "shenzhen", submit_doc, token=token))["medicalClaimSubmit"]
    assert submitted["errors"] == [] and submitted["claim"]["status"] == "SUBMITTED"
    assert (submitted["claim"]["totalFen"], submitted["claim"]["eligibleFen"]) == (97800, 81000)
    assert [line["outcome"] for line in submitted["claim"]["lines"]] == [
        "COVERED",
        "PARTLY_COVERED",
        "COVERED",
        "SELF_PAY",
        "NOT_IN_CATALOGUE",
    ]
    outbox_collect(tenant=tenant("shenzhen"))
    result = data_of(gql(client, "shenzhen", outcome_doc, token=token))["medicalClaim"]
    assert (result["status"], result["fundFen"], result["patientFen"]) == ("ADJUDICATED", 27800, 70000)
    year = io.StringIO()
    call_command("medical", "--tenant", "dongguan", "insured", dongguan_card, "--year", "2026", stdout=year)
    assert "统筹已付 ¥278.00，剩余 ¥722.00" in year.getvalue()
