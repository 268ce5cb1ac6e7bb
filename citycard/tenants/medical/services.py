"""Cross-city medical claims on the tenant side (异地就医直接结算).

As treatment place (就医地) a tenant prices a claim with its own catalogue (``claim_submit``): 甲类 items are
eligible in full, 乙类 items after the patient's first self-pay share, 丙类 not at all; the claim goes to
its outbox. As insured place (参保地) a tenant adjudicates the claims of its insured persons with its own
policy (``claim_adjudicate``, run by interop in its schema): the year's deductible first, then the
reimbursement ratio of each category, then the annual cap. The fund share is what the insured place owes
the treatment place (cleared monthly); the patient pays the rest at the hospital.

Rounding: every basis-point share is rounded half-up, per item for the 乙类 self-pay share and per category
for the fund share (docs/clearing.md works examples).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from citycard.platform.audit.services import audit_record
from citycard.platform.envelopes import PLATFORM, EnvelopeRefused, envelope_open, envelope_seal
from citycard.platform.errors import DomainError
from citycard.tenants.cards.selectors import card_facts
from citycard.tenants.exchange.services import outbox_put
from citycard.tenants.medical.models import CatalogueItem, Claim, ClaimRole, Coverage, InsuredYear, Policy

SHANGHAI = dt.timezone(dt.timedelta(hours=8))


def share_fen(amount_fen: int, bps: int) -> int:
    """``amount × bps / 10000`` rounded half-up (amounts here are never negative)."""
    return (amount_fen * bps * 2 + 10000) // 20000


@transaction.atomic
def catalogue_item_save(
    *,
    code: str,
    name: str,
    category: str,
    unit_price_fen: int,
    coverage: str,
    self_pay_bps: int = 0,
    actor: str,
) -> CatalogueItem:
    if coverage not in Coverage.values:
        raise DomainError("coverage is A, B or C", field="coverage")
    if unit_price_fen < 0 or not 0 <= self_pay_bps <= 10000:
        raise DomainError("price must be ≥ 0 and the self-pay share 0..10000 bps", field="unit_price_fen")
    item, _ = CatalogueItem.objects.update_or_create(
        code=code,
        defaults={
            "name": name,
            "category": category,
            "unit_price_fen": unit_price_fen,
            "coverage": coverage,
            "self_pay_bps": self_pay_bps,
        },
    )
    audit_record(action="medical.catalogue_save", actor=actor, object_type="catalogue_item", object_id=code)
    return item


@transaction.atomic
def policy_set(
    *, year: int, deductible_fen: int, ratios_bps: Mapping[str, int], annual_cap_fen: int, actor: str
) -> Policy:
    if deductible_fen < 0 or annual_cap_fen < 0 or any(not 0 <= v <= 10000 for v in ratios_bps.values()):
        raise DomainError("deductible and cap ≥ 0, ratios 0..10000 bps", field="ratios_bps")
    policy, _ = Policy.objects.update_or_create(
        year=year,
        defaults={
            "deductible_fen": deductible_fen,
            "ratios_bps": dict(ratios_bps),
            "annual_cap_fen": annual_cap_fen,
        },
    )
    audit_record(action="medical.policy_set", actor=actor, object_type="policy", object_id=year)
    return policy


@dataclass(frozen=True)
class Priced:
    total_fen: int
    eligible: dict[str, int]
    lines: list[dict[str, Any]]


def claim_price(*, items: Iterable[tuple[str, int]]) -> Priced:
    """Price claim items ``(catalogue code, quantity)`` with this tenant's catalogue."""
    items = list(items)
    catalogue = {i.code: i for i in CatalogueItem.objects.filter(code__in=[c for c, _ in items])}
    total, eligible, lines = 0, {}, []
    for code, quantity in items:
        item = catalogue.get(code)
        if item is None:
            raise DomainError(
                f"item {code!r} is not in the catalogue", code="not_in_catalogue", field="items"
            )
        if type(quantity) is not int or quantity <= 0:
            raise DomainError(f"quantity of {code} must be a positive integer", field="items")
        amount = item.unit_price_fen * quantity
        if item.coverage == Coverage.A:
            ok = amount
        elif item.coverage == Coverage.B:
            ok = amount - share_fen(amount, item.self_pay_bps)
        else:
            ok = 0
        total += amount
        if ok:
            eligible[item.category] = eligible.get(item.category, 0) + ok
        lines.append({"code": code, "quantity": quantity, "amount_fen": amount, "eligible_fen": ok})
    return Priced(total, eligible, lines)


@transaction.atomic
def claim_submit(
    *,
    claim_no: str,
    card_no: str,
    department: str,
    treated_at: dt.datetime,
    items: Iterable[tuple[str, int]],
    actor: str,
    now: dt.datetime | None = None,
) -> Claim:
    """A hospital of this tenant submits a visiting insured person's claim: priced here, sent for the
    insured place to adjudicate through the outbox."""
    tenant = connection.tenant
    priced = claim_price(items=items)
    claim_id = f"{tenant.code}-{claim_no}"
    claim = Claim.objects.create(
        claim_id=claim_id,
        role=ClaimRole.TREATMENT,
        card_no=card_no,
        department=department,
        treated_at=treated_at,
        total_fen=priced.total_fen,
        eligible=priced.eligible,
        items=priced.lines,
    )
    outbox_put(
        kind="medical.claim",
        message_id=f"mcl-{claim_id}",
        body={
            "claim_id": claim_id,
            "card_no": card_no,
            "department": department,
            "treated_at": treated_at.isoformat(),
            "total_fen": priced.total_fen,
            "eligible": priced.eligible,
        },
        actor=actor,
        now=now,
    )
    return claim


def fund_share(
    *, policy: Policy, eligible: Mapping[str, int], deductible_used: int, fund_paid: int
) -> tuple[int, int, dict[str, Any]]:
    """(fund share, deductible taken, detail) of one claim: the year's deductible is taken from the
    eligible amounts in category order (sorted by name), each category's remainder times its ratio
    (half-up), the sum capped at what the annual cap leaves."""
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


@transaction.atomic
def claim_adjudicate(*, document: dict[str, Any], now: dt.datetime | None = None) -> dict[str, Any]:
    """As insured place: the fund share of a claim under our policy, answered signed. Idempotent per
    claim id (the year's usage moves once). Rejections: ``not_insured`` (card unknown), ``no_policy``."""
    tenant = connection.tenant
    now = now or timezone.now()
    opened = envelope_open(document, recipient=tenant.code, now=now, kinds=("medical.adjudicate",))
    if opened.sender.code != PLATFORM:
        raise EnvelopeRefused("adjudication requests come from the platform", code="unknown_sender")
    body = opened.body
    claim_id, card_no = body["claim_id"], body["card_no"]
    existing = Claim.objects.filter(claim_id=claim_id, role=ClaimRole.INSURED).first()
    if existing is not None:
        answer = existing.detail["answer"]
    else:
        treated_at = dt.datetime.fromisoformat(body["treated_at"])
        year = treated_at.astimezone(SHANGHAI).year
        policy = Policy.objects.filter(year=year).first()
        facts = card_facts(card_nos=[card_no], at=treated_at)
        answer: dict[str, Any] = {"claim_id": claim_id, "total_fen": body["total_fen"]}
        if card_no not in facts:
            answer.update(rejected="not_insured", fund_fen=0, patient_fen=body["total_fen"])
        elif policy is None:
            answer.update(rejected="no_policy", fund_fen=0, patient_fen=body["total_fen"])
        else:
            usage, _ = InsuredYear.objects.select_for_update().get_or_create(card_no=card_no, year=year)
            fund, taken, detail = fund_share(
                policy=policy,
                eligible={k: int(v) for k, v in body["eligible"].items()},
                deductible_used=usage.deductible_used_fen,
                fund_paid=usage.fund_paid_fen,
            )
            usage.deductible_used_fen += taken
            usage.fund_paid_fen += fund
            usage.save(update_fields=["deductible_used_fen", "fund_paid_fen"])
            answer.update(fund_fen=fund, patient_fen=body["total_fen"] - fund, detail=detail)
        Claim.objects.create(
            claim_id=claim_id,
            role=ClaimRole.INSURED,
            card_no=card_no,
            department=body.get("department", ""),
            treated_at=treated_at,
            total_fen=body["total_fen"],
            eligible=body["eligible"],
            fund_fen=answer["fund_fen"],
            patient_fen=answer["patient_fen"],
            detail={"answer": answer},
        )
    return envelope_seal(
        sender=tenant,
        recipient=PLATFORM,
        kind="medical.adjudication",
        message_id=f"{opened.message_id}.ans",
        body=answer,
        now=now,
    )
