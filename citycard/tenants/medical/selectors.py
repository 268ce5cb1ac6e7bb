"""Reading medical roaming data (tenant side): the catalogue, policies, claims with their outcome, each
insured person's year-to-date use."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Count, JSONField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Concat
from django.utils import timezone

from citycard.tenants.exchange.models import InboxMessage
from citycard.tenants.medical.models import (
    CatalogueItem,
    Claim,
    ClaimRole,
    ClosedYear,
    InsuredCategory,
    InsuredYear,
    Policy,
)
from citycard.terminal_kit.beijing import BEIJING

CSV_COLUMNS = ("code", "name", "category", "unit_price_fen", "class", "self_pay_bps", "active")


def percent(bps: int) -> str:
    """Basis points as people read them: 8000 → 80%, 1250 → 12.5%."""
    return f"{bps / 100:.2f}".rstrip("0").rstrip(".") + "%"


# --- catalogue and policies ---------------------------------------------------------------------------


def catalogue_items(*, category: str | None = None, coverage: str | None = None) -> QuerySet[CatalogueItem]:
    qs = CatalogueItem.objects.all()
    if category:
        qs = qs.filter(category=category)
    if coverage:
        qs = qs.filter(coverage=coverage)
    return qs


def catalogue_csv(items: Iterable[CatalogueItem]) -> str:
    """The items as ``catalogue_import`` reads them: exporting and importing again changes nothing."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for i in items:
        writer.writerow(
            [i.code, i.name, i.category, i.unit_price_fen, i.coverage, i.self_pay_bps, str(i.active).lower()]
        )
    return out.getvalue()


def policies(*, year: int | None = None) -> QuerySet[Policy]:
    """Policies, newest year first, with how many claims were adjudicated under each."""
    qs = Policy.objects.annotate(claim_count=Count("claims"))
    return qs.filter(year=year) if year else qs


def policy_in_force(*, category: str, on: dt.date) -> Policy | None:
    """The policy of ``category`` in force on ``on`` (periods of a category never overlap)."""
    return Policy.objects.filter(category=category, effective_from__lte=on, effective_to__gte=on).first()


def year_closed(*, year: int) -> ClosedYear | None:
    return ClosedYear.objects.filter(year=year).first()


# --- claims -------------------------------------------------------------------------------------------


class ClaimStatus:
    SUBMITTED = "submitted"  # sent, the insured place has not answered yet
    ADJUDICATED = "adjudicated"
    REFUSED = "refused"  # nothing of it could be adjudicated (reason given)


def _outcome_body() -> Subquery:
    """The insured place's answer to a claim our hospital submitted, from our inbox (null until then)."""
    message = InboxMessage.objects.filter(
        kind="medical.result", message_id=Concat(Value("mres-"), OuterRef("claim_id"))
    ).values("envelope__payload__body")[:1]
    return Subquery(message, output_field=JSONField())


def claims(*, role: str | None = None) -> QuerySet[Claim]:
    """Claims of either role, newest treatment first; a submitted one carries ``outcome`` (the insured
    place's answer, or None), read from the inbox in the same query."""
    qs = Claim.objects.select_related("policy").annotate(outcome=_outcome_body())
    return qs.filter(role=role) if role else qs


def claim_id_for(*, claim_no: str, hospital_key: str = "") -> str:
    """The full id of a claim our hospital numbered ``claim_no``: this tenant's code, the hospital's key
    (its API key id, keeping hospitals' numbers apart) and the number."""
    tenant = connection.tenant
    return f"{tenant.code}-{hospital_key}-{claim_no}" if hospital_key else f"{tenant.code}-{claim_no}"


def claim_submitted(*, claim_no: str, hospital_key: str = "") -> Claim | None:
    """A claim one of our hospitals submitted, by its own number, with its ``outcome``."""
    claim_id = claim_id_for(claim_no=claim_no, hospital_key=hospital_key)
    return claims(role=ClaimRole.TREATMENT).filter(claim_id=claim_id).first()


@dataclass(frozen=True)
class ClaimResult:
    """Where a claim stands, the same for both roles."""

    status: str
    fund_fen: int | None
    patient_fen: int | None
    refusal: str
    reason: str
    detail: dict[str, Any]


def claim_result(claim: Claim) -> ClaimResult:
    """A claim's status and shares: as insured place from our adjudication, as treatment place from the
    answer in our inbox (``claims()`` annotates it; otherwise it is read here)."""
    if claim.role == ClaimRole.INSURED:
        answer = claim.detail.get("answer", {})
    else:
        answer = getattr(claim, "outcome", None)
        if answer is None and not hasattr(claim, "outcome"):
            answer = claim_outcome(claim_id=claim.claim_id)
        if answer is None:
            return ClaimResult(ClaimStatus.SUBMITTED, None, None, "", "", {})
    refusal = answer.get("rejected", "")
    return ClaimResult(
        ClaimStatus.REFUSED if refusal else ClaimStatus.ADJUDICATED,
        answer.get("fund_fen"),
        answer.get("patient_fen"),
        refusal,
        answer.get("reason", ""),
        answer.get("detail", {}),
    )


def claim_outcome(*, claim_id: str) -> dict[str, Any] | None:
    """What the insured place decided for a claim our hospital submitted (fund share, patient share), once
    the platform delivered it to our inbox."""
    message = InboxMessage.objects.filter(kind="medical.result", message_id=f"mres-{claim_id}").first()
    return message.body if message else None


def claim_outcomes(*, claim_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The answers to several submitted claims (one query); claims not answered yet are absent."""
    ids = {f"mres-{c}": c for c in claim_ids}
    rows = InboxMessage.objects.filter(kind="medical.result", message_id__in=list(ids))
    return {ids[m.message_id]: m.body for m in rows}


# --- insured persons' years ---------------------------------------------------------------------------


@dataclass(frozen=True)
class YearUse:
    """One insured person's year to date (年度累计): what of the 起付线 and 封顶线 is used and left, under
    the policy of their category in force on the day asked about (or the year's last day)."""

    card_no: str
    year: int
    category: str
    policy: Policy | None
    deductible_used_fen: int
    fund_paid_fen: int
    claims: int
    refused: int

    @property
    def deductible_left_fen(self) -> int | None:
        return None if self.policy is None else max(0, self.policy.deductible_fen - self.deductible_used_fen)

    @property
    def cap_left_fen(self) -> int | None:
        return None if self.policy is None else max(0, self.policy.annual_cap_fen - self.fund_paid_fen)


def _as_of(year: int, on: dt.date | None) -> dt.date:
    today = on or timezone.now().astimezone(BEIJING).date()
    return min(max(today, dt.date(year, 1, 1)), dt.date(year, 12, 31))


def insured_category_default(*, card_no: str, year: int) -> str:
    """A person's insured category for ``year`` when nobody set it: their latest earlier year's, else
    职工医保 (employee)."""
    earlier = InsuredYear.objects.filter(card_no=card_no, year__lt=year).order_by("-year").first()
    return earlier.category if earlier is not None else InsuredCategory.EMPLOYEE


def insured_year_use(*, card_no: str, year: int, on: dt.date | None = None) -> YearUse:
    """A person's year to date (nothing used when they have no claims that year)."""
    row = InsuredYear.objects.filter(card_no=card_no, year=year).first()
    category = row.category if row else insured_category_default(card_no=card_no, year=year)
    counts = Claim.objects.filter(role=ClaimRole.INSURED, card_no=card_no, treated_at__year=year).aggregate(
        n=Count("id"), refused=Count("id", filter=~Q(refusal=""))
    )
    return YearUse(
        card_no=card_no,
        year=year,
        category=category,
        policy=policy_in_force(category=category, on=_as_of(year, on)),
        deductible_used_fen=row.deductible_used_fen if row else 0,
        fund_paid_fen=row.fund_paid_fen if row else 0,
        claims=counts["n"],
        refused=counts["refused"],
    )


def insured_years(*, year: int | None = None, on: dt.date | None = None) -> QuerySet[InsuredYear]:
    """Insured persons' years with the number of their claims adjudicated that year and the 起付线
    (``deductible_fen``) and 封顶线 (``annual_cap_fen``) of their category's policy in force on ``on``
    (default today; for a past year its last policy), null without one. One query."""
    on = on or timezone.now().astimezone(BEIJING).date()
    qs = InsuredYear.objects.all()
    if year:
        qs = qs.filter(year=year)
    claims_of = (
        Claim.objects.filter(
            role=ClaimRole.INSURED, card_no=OuterRef("card_no"), treated_at__year=OuterRef("year")
        )
        .values("card_no")
        .annotate(n=Count("id"))
        .values("n")
    )
    policy = Policy.objects.filter(
        category=OuterRef("category"), year=OuterRef("year"), effective_from__lte=on
    ).order_by("-effective_from")
    return qs.annotate(
        claim_count=Subquery(claims_of),
        deductible_fen=Subquery(policy.values("deductible_fen")[:1]),
        annual_cap_fen=Subquery(policy.values("annual_cap_fen")[:1]),
    )
