"""The insured place (参保地): adjudicating its insured persons' claims from other cities under its own
policy (``claim_adjudicate``, run by interop in its schema with a signed request, answered signed).

Steps, for a claim treated on day D of year Y:

1. the card must be one of ours, Y must not be closed, and a policy of the person's insured category
   (职工医保 / 城乡居民医保, from their year's row or the latest earlier one) must be in force on D;
   otherwise nothing of the claim can be adjudicated and it is refused as a whole with the reason
   (``not_insured``, ``year_closed``, ``no_policy``): fund 0, the patient pays everything;
2. what is left of the year's 起付线 (deductible) is taken from the eligible amounts in item-category
   order (sorted by name);
3. each category's remainder × its 报销比例 (ratio, basis points), rounded half-up per category;
4. the sum is capped by what the year's 封顶线 (annual cap) leaves.

Lines the treatment place found ineligible (丙类, outside its catalogue, the 乙类 self-pay share) never reach
step 2: the patient pays them, and the rest of the claim is reimbursed. The year's use moves once per
claim: the same claim again returns the first answer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext

from citycard.platform.audit.services import audit_record
from citycard.platform.envelopes import PLATFORM, EnvelopeRefused, envelope_open, envelope_seal
from citycard.tenants.cards.selectors import card_facts
from citycard.tenants.medical.models import Claim, ClaimRole, ClosedYear, InsuredCategory, InsuredYear, Policy
from citycard.tenants.medical.selectors import insured_category_default, policy_in_force
from citycard.tenants.medical.services.claims import share_fen
from citycard.terminal_kit.beijing import BEIJING


class Refusal:
    """Why nothing of a claim could be adjudicated."""

    NOT_INSURED = "not_insured"
    YEAR_CLOSED = "year_closed"
    NO_POLICY = "no_policy"


def fund_share(
    *, policy: Policy, eligible: Mapping[str, int], deductible_used: int, fund_paid: int
) -> tuple[int, int, dict[str, Any]]:
    """(fund share, deductible taken, detail) of one claim: steps 2-4 of the module docstring."""
    deductible_left = max(0, policy.deductible_fen - deductible_used)
    taken_total, fund, per_category = 0, 0, {}
    for category in sorted(eligible):
        amount = eligible[category]
        taken = min(deductible_left, amount)
        deductible_left -= taken
        taken_total += taken
        ratio = int(policy.ratios_bps.get(category, 0))
        share = share_fen(amount - taken, ratio)
        fund += share
        per_category[category] = {
            "eligible_fen": amount,
            "deductible_fen": taken,
            "ratio_bps": ratio,
            "fund_fen": share,
        }
    cap_left = max(0, policy.annual_cap_fen - fund_paid)
    capped = min(fund, cap_left)
    return capped, taken_total, {"categories": per_category, "before_cap_fen": fund, "cap_left_fen": cap_left}


def _refusal(card_no: str, treated_at: dt.datetime, category: str) -> tuple[str, str, Policy | None]:
    """(refusal code, reason, policy): no code when the claim can be adjudicated under ``policy``."""
    day = treated_at.astimezone(BEIJING).date()
    if card_no not in card_facts(card_nos=[card_no], at=treated_at):
        return Refusal.NOT_INSURED, f"card {card_no} is not insured here", None
    closed = ClosedYear.objects.filter(year=day.year).first()
    if closed is not None:
        return (
            Refusal.YEAR_CLOSED,
            f"{day.year} was closed on {closed.closed_at.astimezone(BEIJING):%Y-%m-%d} (年度清算): its claims "
            "are no longer taken",
            None,
        )
    policy = policy_in_force(category=category, on=day)
    if policy is None:
        label = InsuredCategory(category).label
        return Refusal.NO_POLICY, f"no {label} policy is in force on {day}", None
    return "", "", policy


@transaction.atomic
def claim_adjudicate(*, document: dict[str, Any], now: dt.datetime | None = None) -> dict[str, Any]:
    """As insured place: the fund share of a claim under our policy, answered signed (see the module
    docstring). Idempotent per claim id."""
    tenant = connection.tenant
    now = now or timezone.now()
    opened = envelope_open(document, recipient=tenant.code, now=now, kinds=("medical.adjudicate",))
    if opened.sender.code != PLATFORM:
        raise EnvelopeRefused(gettext("adjudication requests come from the platform"), code="unknown_sender")
    body = opened.body
    claim_id, card_no = body["claim_id"], body["card_no"]
    existing = Claim.objects.filter(claim_id=claim_id, role=ClaimRole.INSURED).first()
    if existing is not None:
        answer = existing.detail["answer"]
    else:
        treated_at = dt.datetime.fromisoformat(body["treated_at"])
        year = treated_at.astimezone(BEIJING).year
        usage = InsuredYear.objects.select_for_update().filter(card_no=card_no, year=year).first()
        category = usage.category if usage else insured_category_default(card_no=card_no, year=year)
        refusal, reason, policy = _refusal(card_no, treated_at, category)
        answer: dict[str, Any] = {"claim_id": claim_id, "total_fen": body["total_fen"], "category": category}
        if refusal:
            answer.update(rejected=refusal, reason=reason, fund_fen=0, patient_fen=body["total_fen"])
        else:
            if usage is None:
                usage = InsuredYear.objects.create(card_no=card_no, year=year, category=category)
            fund, taken, detail = fund_share(
                policy=policy,
                eligible={k: int(v) for k, v in body["eligible"].items()},
                deductible_used=usage.deductible_used_fen,
                fund_paid=usage.fund_paid_fen,
            )
            detail["policy"] = {
                "id": policy.pk,
                "effective_from": policy.effective_from.isoformat(),
                "effective_to": policy.effective_to.isoformat(),
                "deductible_fen": policy.deductible_fen,
                "annual_cap_fen": policy.annual_cap_fen,
            }
            usage.deductible_used_fen += taken
            usage.fund_paid_fen += fund
            usage.save(update_fields=["deductible_used_fen", "fund_paid_fen"])
            answer.update(fund_fen=fund, patient_fen=body["total_fen"] - fund, detail=detail)
        Claim.objects.create(
            claim_id=claim_id,
            role=ClaimRole.INSURED,
            card_no=card_no,
            department=str(body.get("department", ""))[:100],
            treated_at=treated_at,
            total_fen=body["total_fen"],
            eligible=body["eligible"],
            items=body.get("lines", []),
            fund_fen=answer["fund_fen"],
            patient_fen=answer["patient_fen"],
            insured_category=category,
            policy=policy,
            refusal=refusal,
            detail={"answer": answer, "adjudicated_at": now.isoformat()},
        )
        audit_record(
            action="medical.claim_adjudicate",
            actor="interop",
            object_type="medical_claim",
            object_id=claim_id,
            data={"card_no": card_no, "fund_fen": answer["fund_fen"], "refused": refusal},
        )
    return envelope_seal(
        sender=tenant,
        recipient=PLATFORM,
        kind="medical.adjudication",
        message_id=f"{opened.message_id}.ans",
        body=answer,
        now=now,
    )
