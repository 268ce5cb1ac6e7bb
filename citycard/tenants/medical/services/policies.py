"""The insured place's side of configuration: its policies (参保地待遇), each insured person's category for
a year, and closing a year (年度清算).

A policy is per insured category (职工医保 ``employee``, 城乡居民医保 ``resident``) and year, in force from
``effective_from`` to ``effective_to`` (inclusive, inside the year); the periods of one category never
overlap. 起付线 (deductible) and 封顶线 (annual cap) are per person and year, whichever policy of the year
is in force on a day of treatment; 报销比例 (reimbursement ratio) is per item category. Once a claim was
adjudicated under a policy its amounts stay as they were (change the rules from a later date with a new
policy) and its period keeps covering those claims.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from django.db import connection, transaction
from django.db.models import Max, Min
from django.utils import timezone
from django.utils.translation import gettext

from citycard.platform.audit.services import audit_record
from citycard.platform.errors import Conflict, DomainError, NotFound
from citycard.tenants.cards.selectors import card_get
from citycard.tenants.medical.models import ClosedYear, InsuredCategory, InsuredYear, ItemCategory, Policy
from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.cardno import CardNumberError, card_number_clean

AMOUNT_FIELDS = ("deductible_fen", "ratios_bps", "annual_cap_fen")


def _year_closed(year: int) -> ClosedYear | None:
    return ClosedYear.objects.filter(year=year).first()


def policy_check(
    *,
    policy_id: int | None,
    category: str,
    year: int,
    effective_from: dt.date,
    effective_to: dt.date,
    deductible_fen: int,
    ratios_bps: Mapping[str, int],
    annual_cap_fen: int,
) -> None:
    """Refuse a policy that cannot be saved (one DomainError naming the field); writes nothing. Run by
    ``policy_set`` under its lock, and by the admin form so the officer sees the reason on the form."""
    if category not in InsuredCategory.values:
        raise DomainError(
            gettext("insured category %(category)r is not one of %(values)s")
            % {"category": category, "values": ", ".join(InsuredCategory.values)},
            field="category",
        )
    if type(year) is not int or not 2000 <= year <= 2100:
        raise DomainError(gettext("year %(year)r is not a year") % {"year": year}, field="year")
    if effective_from.year != year or effective_to.year != year:
        raise DomainError(
            gettext("a %(year)s policy is in force within %(year)s") % {"year": year}, field="effective_from"
        )
    if effective_to < effective_from:
        raise DomainError(
            gettext("in force until %(effective_to)s is before in force from %(effective_from)s")
            % {"effective_to": effective_to, "effective_from": effective_from},
            field="effective_to",
        )
    for name, value in (("deductible_fen", deductible_fen), ("annual_cap_fen", annual_cap_fen)):
        if type(value) is not int or value < 0:
            raise DomainError(
                gettext("%(name)s is a whole number of fen, 0 or more") % {"name": name}, field=name
            )
    unknown = sorted(set(ratios_bps) - set(ItemCategory.values))
    if unknown:
        raise DomainError(
            gettext("no item category %(unknown)s (one of %(values)s)")
            % {"unknown": ", ".join(unknown), "values": ", ".join(ItemCategory.values)},
            field="ratios_bps",
        )
    if any(type(v) is not int or not 0 <= v <= 10000 for v in ratios_bps.values()):
        raise DomainError(gettext("each reimbursement ratio is 0..10000 basis points"), field="ratios_bps")
    closed = _year_closed(year)
    if closed is not None:
        raise Conflict(
            gettext("%(year)s was closed on %(closed_at)s: its policies stay as they are")
            % {"year": year, "closed_at": format(closed.closed_at, "%Y-%m-%d")},
            field="year",
        )
    others = Policy.objects.filter(category=category, year=year).exclude(pk=policy_id)
    overlap = others.filter(effective_from__lte=effective_to, effective_to__gte=effective_from).first()
    if overlap is not None:
        raise Conflict(
            gettext(
                "the %(category)s policy in force %(start)s to "
                "%(end)s overlaps; end it before %(new_start)s first"
            )
            % {
                "category": overlap.get_category_display(),
                "start": overlap.effective_from,
                "end": overlap.effective_to,
                "new_start": effective_from,
            },
            code="overlap",
            field="effective_from",
        )
    if policy_id is None:
        return
    policy = Policy.objects.filter(pk=policy_id).first()
    if policy is None:
        raise NotFound(gettext("no policy #%(policy_id)s") % {"policy_id": policy_id}, field="policy")
    used = policy.claims.aggregate(n=Min("id"), first=Min("treated_at"), last=Max("treated_at"))
    if used["n"] is None:
        return
    new = {"deductible_fen": deductible_fen, "ratios_bps": dict(ratios_bps), "annual_cap_fen": annual_cap_fen}
    if category != policy.category or year != policy.year or any(getattr(policy, f) != new[f] for f in new):
        raise Conflict(
            gettext(
                "claims were adjudicated under this policy: its category and amounts stay; end "
                "it and set a new policy from a later date"
            ),
            code="policy_in_use",
            field="deductible_fen",
        )
    first, last = (used[k].astimezone(BEIJING).date() for k in ("first", "last"))
    if effective_from > first or effective_to < last:
        raise Conflict(
            gettext(
                "claims treated %(first)s to %(last)s were adjudicated under this policy: it stays in force then"
            )
            % {"first": first, "last": last},
            code="policy_in_use",
            field="effective_from" if effective_from > first else "effective_to",
        )


@transaction.atomic
def policy_set(
    *,
    year: int,
    deductible_fen: int,
    ratios_bps: Mapping[str, int],
    annual_cap_fen: int,
    category: str = InsuredCategory.EMPLOYEE,
    effective_from: dt.date | None = None,
    effective_to: dt.date | None = None,
    policy_id: int | None = None,
    actor: str,
) -> Policy:
    """Set a policy (待遇): ``policy_id`` changes that one; otherwise the policy of ``category`` starting
    ``effective_from`` (default 1 January) is created or changed. ``effective_to`` defaults to 31
    December. Audited with what it was before."""
    effective_from = effective_from or dt.date(year, 1, 1)
    effective_to = effective_to or dt.date(year, 12, 31)
    # Periods are checked against each other, so writers of policies take turns (rare, officer-driven).
    with connection.cursor() as cur:
        cur.execute(f"LOCK TABLE {Policy._meta.db_table} IN SHARE ROW EXCLUSIVE MODE")
    if policy_id is None:
        existing = Policy.objects.filter(category=category, effective_from=effective_from).first()
        policy_id = existing.pk if existing is not None else None
    values = {
        "category": category,
        "year": year,
        "effective_from": effective_from,
        "effective_to": effective_to,
        "deductible_fen": deductible_fen,
        "ratios_bps": {k: ratios_bps[k] for k in sorted(ratios_bps)},
        "annual_cap_fen": annual_cap_fen,
    }
    policy_check(policy_id=policy_id, **values)
    if policy_id is None:
        policy, before = Policy.objects.create(**values), None
    else:
        policy = Policy.objects.get(pk=policy_id)
        before = {k: getattr(policy, k) for k in values}
        if before == values:
            return policy
        for name, value in values.items():
            setattr(policy, name, value)
        policy.save(update_fields=list(values))

    def plain(row):
        return None if row is None else {k: str(v) if isinstance(v, dt.date) else v for k, v in row.items()}

    audit_record(
        action="medical.policy_set",
        actor=actor,
        object_type="policy",
        object_id=policy.pk,
        data={"before": plain(before), "after": plain(values)},
    )
    return policy


def insured_year_check(*, card_no: str, year: int, category: str) -> None:
    """Refuse setting a person's category (one DomainError naming the field); writes nothing."""
    if category not in InsuredCategory.values:
        raise DomainError(
            gettext("insured category %(category)r is not one of %(values)s")
            % {"category": category, "values": ", ".join(InsuredCategory.values)},
            field="category",
        )
    try:
        card_no = card_number_clean(card_no)
    except CardNumberError as exc:
        raise DomainError(str(exc), code=exc.code, field="card_no") from exc
    if card_get(card_no=card_no) is None:
        raise NotFound(gettext("no card %(card_no)s was issued here") % {"card_no": card_no}, field="card_no")
    closed = _year_closed(year)
    if closed is not None:
        raise Conflict(
            gettext("%(year)s was closed on %(closed_at)s")
            % {"year": year, "closed_at": format(closed.closed_at, "%Y-%m-%d")},
            field="year",
        )


@transaction.atomic
def insured_year_set_category(*, card_no: str, year: int, category: str, actor: str) -> InsuredYear:
    """Say which scheme a person is insured under in ``year`` (职工医保 / 城乡居民医保); their later claims
    of that year are adjudicated under that category's policy. What they used so far stays."""
    insured_year_check(card_no=card_no, year=year, category=category)
    usage, created = InsuredYear.objects.select_for_update().get_or_create(
        card_no=card_no, year=year, defaults={"category": category}
    )
    before = None if created else usage.category
    if not created and usage.category == category:
        return usage
    if not created:
        usage.category = category
        usage.save(update_fields=["category"])
    audit_record(
        action="medical.insured_year_set_category",
        actor=actor,
        object_type="insured_year",
        object_id=f"{card_no}:{year}",
        data={"before": before, "after": category},
    )
    return usage


@transaction.atomic
def medical_year_close(*, year: int, actor: str, now: dt.datetime | None = None) -> ClosedYear:
    """Close a year that has ended (年度清算): claims treated in it are refused from now on, and its
    policies and insured persons' categories stay as they are."""
    now = now or timezone.now()
    if year >= now.astimezone(BEIJING).year:
        raise DomainError(
            gettext("%(year)s has not ended yet: a year is closed after 31 December") % {"year": year},
            field="year",
        )
    closed = _year_closed(year)
    if closed is not None:
        raise Conflict(
            gettext("%(year)s was already closed on %(closed_at)s by %(closed_by)s")
            % {
                "year": year,
                "closed_at": format(closed.closed_at, "%Y-%m-%d"),
                "closed_by": closed.closed_by,
            },
            field="year",
        )
    closed = ClosedYear.objects.create(year=year, closed_at=now, closed_by=actor[:150])
    audit_record(action="medical.year_close", actor=actor, object_type="medical_year", object_id=year)
    return closed
