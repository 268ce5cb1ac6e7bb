"""The treatment place (就医地): its hospitals' claims for visiting insured persons, priced with its own
catalogue and sent to the insured place through the outbox.

Each line of a claim is priced on its own: a 甲类 (A) item is eligible in full, a 乙类 (B) item after the
patient's self-pay share (``self_pay_bps`` of the line, rounded half-up), a 丙类 (C) item not at all, and an
item outside the catalogue (never listed, or withdrawn) is paid by the patient at the hospital's own price.
The eligible amounts, per item category, are what the insured place adjudicates (adjudication.py). A claim
is refused here only when it cannot be routed or priced at all (not a card number, no insured place we
roam with, a line without a price); nothing is written then.

Submitting is idempotent by the hospital's claim id: the same claim again returns the first one; the same
id with other content is a conflict.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext

from citycard.platform.audit.services import audit_record
from citycard.platform.errors import Conflict, DomainError
from citycard.platform.selectors import networks_shared, tenant_by_division
from citycard.tenants.exchange.services import outbox_put
from citycard.tenants.medical.models import CatalogueItem, Claim, ClaimRole, Coverage
from citycard.tenants.medical.selectors import claim_id_for
from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.cardno import CardNumberError, card_number_clean
from citycard.terminal_kit.money import bps_of

CLAIM_NO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,39}$")
MAX_LINES = 500


class LineOutcome:
    """What happened to one line of a claim at the treatment place."""

    COVERED = "covered"  # 甲类: eligible in full
    PARTLY_COVERED = "partly_covered"  # 乙类: eligible after the self-pay share
    SELF_PAY = "self_pay"  # 丙类: the patient pays
    NOT_IN_CATALOGUE = "not_in_catalogue"  # outside the catalogue: the patient pays


class ClaimItem(NamedTuple):
    """One line as a hospital sends it: the catalogue code and quantity; for an item outside the
    catalogue also its unit price (fen) and name, since the catalogue has neither."""

    code: str
    quantity: int
    unit_price_fen: int | None = None
    name: str = ""


def share_fen(amount_fen: int, bps: int) -> int:
    """A share of a claim at ``bps``: ``terminal_kit.money.bps_of`` (half-up; amounts here are never negative)."""
    return bps_of(amount_fen, bps)


@dataclass(frozen=True)
class Priced:
    total_fen: int
    eligible: dict[str, int]
    lines: list[dict[str, Any]]

    @property
    def eligible_fen(self) -> int:
        return sum(self.eligible.values())


def claim_price(*, items: Iterable[ClaimItem | tuple]) -> Priced:
    """Price claim lines with this tenant's catalogue (one query). A line outside the catalogue needs the
    hospital's unit price (``price_required``); a quantity is a positive whole number."""
    lines_in = [ClaimItem(*i) for i in items]
    if not lines_in:
        raise DomainError(gettext("a claim needs at least one item"), field="items")
    if len(lines_in) > MAX_LINES:
        raise DomainError(
            gettext("a claim has at most %(MAX_LINES)s items; split it") % {"MAX_LINES": MAX_LINES},
            field="items",
        )
    catalogue = {
        i.code: i for i in CatalogueItem.objects.filter(code__in=[c.code for c in lines_in], active=True)
    }
    total, eligible, lines = 0, {}, []
    for n, line in enumerate(lines_in, start=1):
        if type(line.quantity) is not int or line.quantity <= 0:
            raise DomainError(
                gettext("item %(n)s (%(line)s): the quantity must be a positive whole number")
                % {"n": n, "line": line.code},
                field="items",
            )
        item = catalogue.get(line.code)
        if item is None:
            if type(line.unit_price_fen) is not int or line.unit_price_fen < 0:
                raise DomainError(
                    gettext("item %(n)s (%(line)s) is not in the catalogue: send its unit price in fen")
                    % {"n": n, "line": line.code},
                    code="price_required",
                    field="items",
                )
            amount = line.unit_price_fen * line.quantity
            lines.append(
                {
                    "code": line.code,
                    "name": (line.name or "").strip()[:100],
                    "category": "",
                    "coverage": "",
                    "quantity": line.quantity,
                    "unit_price_fen": line.unit_price_fen,
                    "amount_fen": amount,
                    "eligible_fen": 0,
                    "self_pay_fen": amount,
                    "outcome": LineOutcome.NOT_IN_CATALOGUE,
                }
            )
            total += amount
            continue
        amount = item.unit_price_fen * line.quantity
        if item.coverage == Coverage.A:
            ok, outcome = amount, LineOutcome.COVERED
        elif item.coverage == Coverage.B:
            ok, outcome = amount - share_fen(amount, item.self_pay_bps), LineOutcome.PARTLY_COVERED
        else:
            ok, outcome = 0, LineOutcome.SELF_PAY
        total += amount
        if ok:
            eligible[item.category] = eligible.get(item.category, 0) + ok
        lines.append(
            {
                "code": item.code,
                "name": item.name,
                "category": item.category,
                "coverage": item.coverage,
                "quantity": line.quantity,
                "unit_price_fen": item.unit_price_fen,
                "amount_fen": amount,
                "eligible_fen": ok,
                "self_pay_fen": amount - ok,
                "outcome": outcome,
            }
        )
    return Priced(total, eligible, lines)


def _fingerprint(*, card_no: str, department: str, treated_at: dt.datetime, items: list[ClaimItem]) -> str:
    request = {
        "card_no": card_no,
        "department": department,
        "treated_at": treated_at.astimezone(dt.UTC).isoformat(),
        "items": [list(i) for i in items],
    }
    return hashlib.sha256(json.dumps(request, ensure_ascii=False, sort_keys=True).encode()).hexdigest()


def _insured_place_check(card_no: str, day: dt.date) -> None:
    """The card's insured place (its first six digits) is another city we roam with that day."""
    tenant = connection.tenant
    insured = tenant_by_division(card_no[:6])
    if insured is None or insured.is_platform:
        raise DomainError(
            gettext("card %(card)s names no insured place we know (division %(division)s)")
            % {"card": card_no, "division": card_no[:6]},
            code="unknown_insured_place",
            field="card_no",
        )
    if insured.clearing_tenant.pk == tenant.clearing_tenant.pk:
        raise DomainError(
            gettext("card %(card_no)s is insured here: settle it as a local claim, not cross-city (异地就医)")
            % {"card_no": card_no},
            code="not_roaming",
            field="card_no",
        )
    if not networks_shared(a=tenant, b=insured, on=day).exists():
        raise DomainError(
            gettext("%(insured_name)s (%(insured)s) and we share no roaming network on %(day)s")
            % {"insured_name": insured.name_zh, "insured": insured.code, "day": day},
            code="no_network",
            field="card_no",
        )


@transaction.atomic
def claim_submit(
    *,
    claim_no: str,
    card_no: str,
    department: str,
    treated_at: dt.datetime,
    items: Iterable[ClaimItem | tuple],
    actor: str,
    hospital_key: str = "",
    now: dt.datetime | None = None,
) -> tuple[Claim, bool]:
    """A hospital of this tenant submits a visiting insured person's claim: priced here, sent for the
    insured place to adjudicate through the outbox. ``claim_no`` is the hospital's own id; ``hospital_key``
    (its API key id, for a partner app) keeps one hospital's ids apart from another's. Returns the claim
    and whether it is new (false: the same claim was submitted before)."""
    now = now or timezone.now()
    if not CLAIM_NO.match(claim_no or ""):
        raise DomainError(
            gettext("claim id %(claim_no)r must be 1-40 letters, digits or . _ : / -")
            % {"claim_no": claim_no},
            field="claim_no",
        )
    claim_id = claim_id_for(claim_no=claim_no, hospital_key=hospital_key)
    if len(claim_id) > 60:
        allowed = 60 - (len(claim_id) - len(claim_no))
        raise DomainError(
            gettext("claim id %(claim_no)r is too long: at most %(allowed)s characters here")
            % {"claim_no": claim_no, "allowed": allowed},
            field="claim_no",
        )
    try:
        card_no = card_number_clean(card_no)
    except CardNumberError as exc:
        raise DomainError(str(exc), code=exc.code, field="card_no") from exc
    if treated_at.tzinfo is None or treated_at > now:
        raise DomainError(
            gettext("the time of treatment is a time with its offset, not in the future"), field="treated_at"
        )
    department = (department or "").strip()[:100]
    lines_in = [ClaimItem(*i) for i in items]
    fingerprint = _fingerprint(card_no=card_no, department=department, treated_at=treated_at, items=lines_in)
    existing = Claim.objects.filter(claim_id=claim_id, role=ClaimRole.TREATMENT).first()
    if existing is not None:
        if existing.request_sha256 and existing.request_sha256 != fingerprint:
            raise Conflict(
                gettext("claim %(claim_no)s was submitted before with other content; send a new claim id")
                % {"claim_no": claim_no},
                field="claim_no",
            )
        return existing, False
    _insured_place_check(card_no, treated_at.astimezone(BEIJING).date())
    priced = claim_price(items=lines_in)
    claim = Claim.objects.create(
        claim_id=claim_id,
        role=ClaimRole.TREATMENT,
        card_no=card_no,
        department=department,
        treated_at=treated_at,
        total_fen=priced.total_fen,
        eligible=priced.eligible,
        items=priced.lines,
        hospital_claim_no=claim_no,
        request_sha256=fingerprint,
        submitted_at=now,
        submitted_by=actor[:150],
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
            "lines": priced.lines,
        },
        actor=actor,
        now=now,
    )
    audit_record(
        action="medical.claim_submit",
        actor=actor,
        object_type="medical_claim",
        object_id=claim_id,
        data={"card_no": card_no, "total_fen": priced.total_fen, "eligible_fen": priced.eligible_fen},
    )
    return claim, True
