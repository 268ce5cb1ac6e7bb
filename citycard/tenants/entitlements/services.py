"""Defining, approving, granting, buying and revoking entitlements (权益), and the offline list's versions.

Each function is one business action: atomic, audited, refusing bad input with a DomainError (nothing
written). Who defines a type is its department's business (谁主管谁负责); only an approved type is granted.
A city's administrator approves its departments' types; a county's departments define and approve their
own in the county's schema.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence

from django.db import IntegrityError, connection, models, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery, Value
from django.utils import timezone
from django.utils.translation import gettext as _

from citycard.platform.audit.services import audit_record, audit_record_many
from citycard.platform.errors import Conflict, DomainError, NotFound
from citycard.platform.models import Role, TenantKind
from citycard.tenants.accounts.models import AccountKind
from citycard.tenants.accounts.services import account_pay, ledger_account_external
from citycard.tenants.cards.models import LIVE_STATES, Card, Cardholder, CardholderCategory, CategoryCode
from citycard.tenants.cards.selectors import cardholder_pii
from citycard.tenants.departments.models import Department, ServicePoint
from citycard.tenants.entitlements.models import (
    Entitlement,
    EntitlementListEntry,
    EntitlementListHead,
    EntitlementType,
    GrantSource,
    QuotaPeriod,
    Residence,
    TypeStatus,
)
from citycard.terminal_kit.beijing import BEIJING

_CODE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
LIST_HEAD_PK = 1


def _today(at: dt.datetime | None) -> dt.date:
    return (at or timezone.now()).astimezone(BEIJING).date()


def _type(code: str, *, lock: bool = False) -> EntitlementType:
    qs = EntitlementType.objects.select_related("department")
    found = (qs.select_for_update() if lock else qs).filter(code=code).first()
    if found is None:
        raise NotFound(_("no entitlement type %(code)r here") % {"code": code}, field="type")
    return found


def approver_role() -> str:
    """The role that approves entitlement types in this tenant: a city's administrator in a city, the
    county's officer in a county (a county's departments define and approve their own)."""
    return Role.COUNTY_OFFICER if connection.tenant.kind == TenantKind.COUNTY else Role.CITY_ADMIN


def type_define_refusal(*, role: str, role_department: str, department: str) -> str | None:
    """Why a user of ``role`` may not define a type for ``department`` here (None: may). A department
    officer defines only its own department's; the approving administrator any department's."""
    if role == Role.DEPARTMENT_OFFICER:
        return (
            None
            if role_department == department
            else _("a department officer defines only its own department's entitlement types")
        )
    if role == approver_role():
        return None
    return _("only this tenant's administrator or a department's officer defines entitlement types")


def grant_refusal(*, role: str, role_department: str, department: str) -> str | None:
    """Why a user of ``role`` may not grant or revoke ``department``'s entitlements here (None: may). The
    department's own officer (谁主管谁负责) or this tenant's administrator (a city's administrator, a
    county's officer) may; anyone else, another department's officer included, may not."""
    if role == Role.DEPARTMENT_OFFICER and role_department == department:
        return None
    if role == approver_role():
        return None
    return _(
        "a %(role)s may not grant or revoke department %(department)s's entitlements: only that "
        "department's officer or the %(admin)s may"
    ) % {"role": _role_label(role), "department": department, "admin": Role(approver_role()).label}


def _grant_check(kind: EntitlementType, *, role: str, role_department: str) -> None:
    refusal = grant_refusal(role=role, role_department=role_department, department=kind.department.code)
    if refusal:
        raise DomainError(refusal, code="not_allowed", field="role")


def _role_label(role: str) -> str:
    return str(Role(role).label) if role in Role.values else role


def _holder(cardholder_id: int) -> Cardholder:
    holder = Cardholder.objects.filter(pk=cardholder_id).first()
    if holder is None:
        raise NotFound(_("no cardholder %(id)s") % {"id": cardholder_id}, field="cardholder_id")
    return holder


@transaction.atomic
def entitlement_type_create(
    *,
    code: str,
    name: str,
    department: str,
    categories: Iterable[str] = (),
    age_min: int | None = None,
    age_max: int | None = None,
    residence: Iterable[str] = (),
    schemes: Iterable[str] = (),
    valid_from: dt.date | None = None,
    valid_to: dt.date | None = None,
    period_days: int | None = None,
    quota_period: str = QuotaPeriod.NONE,
    quota: int | None = None,
    price_fen: int = 0,
    service_points: Iterable[str] = (),
    auto_grant: bool = False,
    actor: str,
    role: str,
    role_department: str = "",
    at: dt.datetime | None = None,
) -> EntitlementType:
    """A department defines an entitlement type (权益类型); it waits for approval before it is granted.
    ``role`` (and ``role_department`` for a department officer) is the acting user's
    (``type_define_refusal``)."""
    refusal = type_define_refusal(role=role, role_department=role_department, department=department)
    if refusal:
        raise DomainError(refusal, code="not_allowed", field="department")
    if not _CODE.match(code or ""):
        raise DomainError(
            _("code %(code)r must be a lower-case code (letters, digits, - or _)") % {"code": code},
            field="code",
        )
    if not (name or "").strip():
        raise DomainError(_("an entitlement type needs a name"), field="name")
    dept = Department.objects.filter(code=department).first()
    if dept is None:
        raise NotFound(_("no department %(code)r here") % {"code": department}, field="department")
    categories, residence, schemes = sorted(set(categories)), sorted(set(residence)), sorted(set(schemes))
    points = sorted(set(service_points))
    bad = [c for c in categories if c not in CategoryCode.values]
    if bad:
        raise DomainError(_("unknown categories %(codes)s") % {"codes": ", ".join(bad)}, field="categories")
    bad = [r for r in residence if r not in Residence.values]
    if bad:
        raise DomainError(
            _("unknown residence conditions %(codes)s") % {"codes": ", ".join(bad)}, field="residence"
        )
    if age_min is not None and age_max is not None and age_max < age_min:
        raise DomainError(_("the age band ends before it starts"), field="age_max")
    if valid_from and valid_to and valid_to < valid_from:
        raise DomainError(_("the type's validity ends before it starts"), field="valid_to")
    if quota_period not in QuotaPeriod.values:
        raise DomainError(
            _("quota period must be one of %(periods)s") % {"periods": ", ".join(QuotaPeriod.values)},
            field="quota_period",
        )
    if (quota_period == QuotaPeriod.NONE) != (quota is None) or (quota is not None and quota <= 0):
        raise DomainError(_("a quota is a positive number of uses per day, month or year"), field="quota")
    if type(price_fen) is not int or price_fen < 0:
        raise DomainError(_("price_fen is a whole number of fen, 0 when not sold"), field="price_fen")
    if price_fen and not period_days:
        raise DomainError(_("a sold entitlement is valid for a period (period_days)"), field="period_days")
    own = set(ServicePoint.objects.filter(code__in=points, active=True).values_list("code", flat=True))
    missing = [p for p in points if p not in own]
    if missing:
        raise DomainError(
            _("no open service point %(codes)s here") % {"codes": ", ".join(missing)}, field="service_points"
        )
    if EntitlementType.objects.filter(code=code).exists():
        raise Conflict(_("entitlement type %(code)s already exists") % {"code": code}, field="code")
    kind = EntitlementType.objects.create(
        code=code,
        name=name.strip(),
        department=dept,
        categories=categories,
        age_min=age_min,
        age_max=age_max,
        residence=residence,
        schemes=schemes,
        valid_from=valid_from,
        valid_to=valid_to,
        period_days=period_days,
        quota_period=quota_period,
        quota=quota,
        price_fen=price_fen,
        service_points=points,
        auto_grant=auto_grant,
        created_by=actor,
        created_at=at or timezone.now(),
    )
    audit_record(
        action="entitlement_type.create",
        actor=actor,
        object_type="entitlement_type",
        object_id=code,
        data={"department": department, "price_fen": price_fen, "service_points": points},
    )
    return kind


@transaction.atomic
def entitlement_type_approve(
    *, code: str, actor: str, role: str, at: dt.datetime | None = None
) -> EntitlementType:
    """The administrator approves a type (审批); an automatic type is then granted to every eligible
    cardholder. Approving twice is harmless. ``role`` is the acting user's: only this tenant's
    administrator (``approver_role``) approves; a department's officer never does, not even its own
    department's type (谁主管谁负责: the department defines, the city approves)."""
    kind = _type(code, lock=True)
    if role != approver_role():
        raise DomainError(
            _("only the %(who)s approves entitlement types; a %(role)s cannot approve %(code)s")
            % {"who": Role(approver_role()).label, "role": _role_label(role), "code": code},
            code="not_allowed",
            field="role",
        )
    if kind.status == TypeStatus.APPROVED:
        return kind
    if kind.status == TypeStatus.WITHDRAWN:
        raise Conflict(_("entitlement type %(code)s was withdrawn") % {"code": code}, field="type")
    kind.status, kind.approved_by, kind.approved_at = TypeStatus.APPROVED, actor, at or timezone.now()
    kind.save(update_fields=["status", "approved_by", "approved_at"])
    audit_record(
        action="entitlement_type.approve", actor=actor, object_type="entitlement_type", object_id=code
    )
    if kind.auto_grant:
        entitlements_auto_grant_all(kind=kind, actor=actor, at=at or timezone.now())
    return kind


@transaction.atomic
def entitlement_type_withdraw(
    *, code: str, reason: str, actor: str, at: dt.datetime | None = None
) -> EntitlementType:
    """Stop a type (停用): no new grants, no acceptance; its holders leave the offline list at the next
    version. The grants stay, for the record."""
    kind = _type(code, lock=True)
    if not (reason or "").strip():
        raise DomainError(_("a withdrawal states why"), field="reason")
    if kind.status == TypeStatus.WITHDRAWN:
        return kind
    kind.status = TypeStatus.WITHDRAWN
    kind.save(update_fields=["status"])
    audit_record(
        action="entitlement_type.withdraw",
        actor=actor,
        object_type="entitlement_type",
        object_id=code,
        data={"reason": reason.strip()},
    )
    holders = list(kind.grants.values_list("cardholder_id", flat=True).distinct())
    if holders:
        _list_apply(holder_ids=holders, at=at or timezone.now())
    return kind


def _age_on(holder: Cardholder, day: dt.date) -> int:
    born = dt.date.fromisoformat(cardholder_pii(cardholder=holder)["birth_date"])
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def eligibility_refusal(kind: EntitlementType, holder: Cardholder, *, on: dt.date) -> str | None:
    """Why ``holder`` is not eligible for ``kind`` on ``on`` (a reason code), or None when eligible."""
    if kind.categories:
        held = set(
            CardholderCategory.objects.filter(cardholder=holder, valid_from__lte=on)
            .filter(Q(valid_to__isnull=True) | Q(valid_to__gte=on))
            .values_list("code", flat=True)
        )
        if not held & set(kind.categories):
            return "category"
    if kind.residence and not any(getattr(holder, r) for r in kind.residence):
        return "residence"
    if (
        kind.schemes
        and not Card.objects.filter(
            cardholder=holder, scheme__code__in=kind.schemes, state__in=LIVE_STATES
        ).exists()
    ):
        return "scheme"
    if kind.age_min is not None or kind.age_max is not None:
        age = _age_on(holder, on)
        if (kind.age_min is not None and age < kind.age_min) or (
            kind.age_max is not None and age > kind.age_max
        ):
            return "age"
    return None


def _grant(
    kind: EntitlementType,
    holder: Cardholder,
    *,
    source: str,
    valid_from: dt.date,
    valid_to: dt.date | None,
    actor: str,
    at: dt.datetime,
    request_key: str | None = None,
    posting_id: int | None = None,
    role: str = "",
) -> Entitlement:
    if kind.status != TypeStatus.APPROVED:
        raise DomainError(
            _("entitlement type %(code)s is not approved") % {"code": kind.code},
            code="not_approved",
            field="type",
        )
    if kind.valid_to and (valid_to is None or valid_to > kind.valid_to):
        valid_to = kind.valid_to
    if kind.valid_from and valid_from < kind.valid_from:
        valid_from = kind.valid_from
    if valid_to is not None and valid_to < valid_from:
        raise DomainError(
            _("%(code)s is no longer valid") % {"code": kind.code}, code="expired", field="type"
        )
    try:
        with transaction.atomic():
            grant = Entitlement.objects.create(
                type=kind,
                cardholder_id=holder.pk,
                valid_from=valid_from,
                valid_to=valid_to,
                source=source,
                request_key=request_key,
                posting_id=posting_id,
                granted_by=actor,
                granted_at=at,
            )
    except IntegrityError:
        raise Conflict(
            _("cardholder %(id)s already holds %(code)s") % {"id": holder.pk, "code": kind.code},
            code="already_held",
            field="type",
        ) from None
    audit_record(
        action="entitlement.grant",
        actor=actor,
        object_type="cardholder",
        object_id=holder.pk,
        data={
            "type": kind.code,
            "source": source,
            "valid_from": valid_from,
            "valid_to": valid_to,
            **({"role": role} if role else {}),
        },
    )
    _list_apply(holder_ids=[holder.pk], at=at)
    return grant


@transaction.atomic
def entitlement_grant(
    *,
    type: str,
    cardholder_id: int,
    valid_from: dt.date | None = None,
    valid_to: dt.date | None = None,
    source: str = GrantSource.MANUAL,
    actor: str,
    role: str,
    role_department: str = "",
    at: dt.datetime | None = None,
) -> Entitlement:
    """Grant a cardholder an entitlement (on application, or by an officer): eligibility checked.
    ``role`` (and ``role_department``) is the acting user's: the type's department's officer or this
    tenant's administrator (``grant_refusal``); anyone else is refused (``not_allowed``), nothing written."""
    at = at or timezone.now()
    kind = _type(type)
    _grant_check(kind, role=role, role_department=role_department)
    holder = _holder(cardholder_id)
    day = valid_from or _today(at)
    refusal = eligibility_refusal(kind, holder, on=day)
    if refusal:
        raise DomainError(
            _("cardholder %(id)s is not eligible for %(code)s (%(why)s)")
            % {"id": cardholder_id, "code": kind.code, "why": refusal},
            code="not_eligible",
            field="cardholder_id",
        )
    if valid_to is None and kind.period_days:
        valid_to = day + dt.timedelta(days=kind.period_days - 1)
    return _grant(
        kind, holder, source=source, valid_from=day, valid_to=valid_to, actor=actor, at=at, role=role
    )


@transaction.atomic
def entitlement_grant_batch(
    *,
    type: str,
    cardholder_ids: Sequence[int],
    actor: str,
    role: str,
    role_department: str = "",
    at: dt.datetime | None = None,
) -> dict[str, list[int]]:
    """Load a type onto many cardholders (批量, e.g. a school its students): each granted, already held, or
    refused as not eligible; one audit entry per grant. The acting user's role as for
    ``entitlement_grant``. Returns the ids by outcome."""
    at = at or timezone.now()
    kind = _type(type)
    _grant_check(kind, role=role, role_department=role_department)
    out: dict[str, list[int]] = {"granted": [], "already_held": [], "not_eligible": [], "unknown": []}
    holders = {h.pk: h for h in Cardholder.objects.filter(pk__in=list(cardholder_ids))}
    day = _today(at)
    for holder_id in cardholder_ids:
        holder = holders.get(holder_id)
        if holder is None:
            out["unknown"].append(holder_id)
            continue
        if eligibility_refusal(kind, holder, on=day):
            out["not_eligible"].append(holder_id)
            continue
        valid_to = day + dt.timedelta(days=kind.period_days - 1) if kind.period_days else None
        try:
            _grant(
                kind,
                holder,
                source=GrantSource.BATCH,
                valid_from=day,
                valid_to=valid_to,
                actor=actor,
                at=at,
                role=role,
            )
        except Conflict:
            out["already_held"].append(holder_id)
            continue
        out["granted"].append(holder_id)
    return out


def _auto_grant_one(kind: EntitlementType, holder: Cardholder, *, actor: str, at: dt.datetime | None) -> bool:
    at = at or timezone.now()
    day = _today(at)
    if Entitlement.objects.filter(type=kind, cardholder_id=holder.pk, revoked_at__isnull=True).exists():
        return False
    if eligibility_refusal(kind, holder, on=day):
        return False
    start = day
    if kind.categories:  # from when the category that makes them eligible began (敬老 from the 60th year)
        start = (
            CardholderCategory.objects.filter(
                cardholder=holder, code__in=kind.categories, valid_from__lte=day
            )
            .filter(Q(valid_to__isnull=True) | Q(valid_to__gte=day))
            .order_by("valid_from")
            .values_list("valid_from", flat=True)
            .first()
        ) or day
    _grant(kind, holder, source=GrantSource.AUTO, valid_from=start, valid_to=None, actor=actor, at=at)
    return True


def _years_before(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def _eligible(kind: EntitlementType, day: dt.date) -> QuerySet[Cardholder]:
    """The cardholders eligible for ``kind`` on ``day`` by every condition but the exact age, in SQL
    (categories, residence, schemes; the age band by the decade of birth), who do not hold it now; each
    annotated ``start``: from when the category that makes them eligible began (敬老 from the 60th year),
    or ``day``."""
    in_force = Q(valid_from__lte=day) & (Q(valid_to__isnull=True) | Q(valid_to__gte=day))
    holders = Cardholder.objects.exclude(
        Exists(Entitlement.objects.filter(type=kind, cardholder_id=OuterRef("pk"), revoked_at__isnull=True))
    )
    if kind.categories:
        held = CardholderCategory.objects.filter(
            in_force, cardholder=OuterRef("pk"), code__in=kind.categories
        )
        holders = holders.filter(Exists(held)).annotate(
            start=Subquery(held.order_by("valid_from").values("valid_from")[:1])
        )
    else:
        holders = holders.annotate(start=Value(day, output_field=models.DateField()))
    if kind.residence:
        either = Q()
        for condition in kind.residence:
            either |= Q(**{condition: True})
        holders = holders.filter(either)
    if kind.schemes:
        holders = holders.filter(
            Exists(
                Card.objects.filter(
                    cardholder=OuterRef("pk"), scheme__code__in=kind.schemes, state__in=LIVE_STATES
                )
            )
        )
    if kind.age_min is not None:  # born on or before this day; a decade wholly after it is out
        holders = holders.filter(birth_decade__lte=_years_before(day, kind.age_min).year)
    if kind.age_max is not None:  # born after this day; a decade wholly before it is out
        holders = holders.filter(birth_decade__gte=(_years_before(day, kind.age_max + 1).year // 10) * 10)
    return holders


def _decades_wholly_in_band(kind: EntitlementType, day: dt.date) -> Q:
    """Decades of birth in which everyone is inside the type's age band on ``day`` (no need to read the
    birth date, which only the encrypted ID number holds)."""
    sure = Q()
    if kind.age_min is not None:  # the decade's last day is on or before the latest birth date allowed
        latest = _years_before(day, kind.age_min)
        sure &= Q(
            birth_decade__lte=latest.year - 9 if latest >= dt.date(latest.year, 12, 31) else latest.year - 10
        )
    if kind.age_max is not None:  # the decade's first day is after the earliest birth date excluded
        earliest = _years_before(day, kind.age_max + 1)
        sure &= Q(birth_decade__gt=earliest.year)
    return sure


def entitlements_auto_grant_all(*, kind: EntitlementType, actor: str, at: dt.datetime) -> int:
    """Grant an automatic type to every eligible cardholder (全员自动授予), set-based: one
    ``INSERT … SELECT`` with the eligibility in SQL; only cardholders whose decade of birth straddles the
    age band's edge have their birth date read (decrypted) to decide. One audit entry per cardholder
    granted (``entitlement.grant``, as a grant by hand, so each cardholder's history shows it), written by
    one ``INSERT … SELECT`` (``audit_record_many``); the offline list follows in SQL. Returns how many
    were granted."""
    day = _today(at)
    eligible = _eligible(kind, day)
    age_banded = kind.age_min is not None or kind.age_max is not None
    granted: list[tuple[int, dt.date, dt.date | None]] = []
    for subset in [eligible.filter(_decades_wholly_in_band(kind, day))] if age_banded else [eligible]:
        granted += _grants_insert(kind, subset, actor=actor, at=at)
    if age_banded:
        edge = eligible.exclude(_decades_wholly_in_band(kind, day))
        within = [h.pk for h in edge if eligibility_refusal(kind, h, on=day) is None]
        if within:
            granted += _grants_insert(kind, eligible.filter(pk__in=within), actor=actor, at=at)
    if granted:
        audit_record_many(
            action="entitlement.grant",
            actor=actor,
            object_type="cardholder",
            entries=[
                (
                    holder_id,
                    {"type": kind.code, "source": GrantSource.AUTO, "valid_from": start, "valid_to": end},
                )
                for holder_id, start, end in granted
            ],
        )
        _list_apply(holder_ids=[g[0] for g in granted] if len(granted) <= 50 else None, at=at)
    return len(granted)


def _grants_insert(
    kind: EntitlementType, holders: QuerySet[Cardholder], *, actor: str, at: dt.datetime
) -> list[tuple[int, dt.date, dt.date | None]]:
    """``INSERT INTO entitlement … SELECT`` from the eligible cardholders' query (the type's own dates
    bound each grant); returns (cardholder, from, to) of each grant made."""
    sql, params = holders.values("pk", "start").query.sql_with_params()
    start = "GREATEST(e.start, %s::date)" if kind.valid_from else "e.start"
    start_params = [kind.valid_from] if kind.valid_from else []
    with connection.cursor() as cur:
        cur.execute(
            f"""INSERT INTO entitlements_entitlement
                    (type_id, cardholder_id, valid_from, valid_to, source, granted_by, granted_at,
                     revoked_by, revoke_reason)
                SELECT %s, e.pk, {start}, %s::date, %s, %s, %s, '', ''
                  FROM ({sql}) AS e(pk, start)
                 WHERE %s::date IS NULL OR {start} <= %s::date
                ON CONFLICT DO NOTHING
                RETURNING cardholder_id, valid_from, valid_to""",
            [
                kind.pk,
                *start_params,
                kind.valid_to,
                GrantSource.AUTO,
                actor,
                at,
                *params,
                kind.valid_to,
                *start_params,
                kind.valid_to,
            ],
        )
        return sorted((row[0], row[1], row[2]) for row in cur.fetchall())


@transaction.atomic
def entitlements_auto_grant(
    *, cardholder_id: int, actor: str = "system", at: dt.datetime | None = None
) -> list[str]:
    """Grant every approved automatic type the cardholder is now eligible for (a new elderly cardholder
    gets free venue entry); returns the codes granted."""
    holder = _holder(cardholder_id)
    kinds = EntitlementType.objects.filter(status=TypeStatus.APPROVED, auto_grant=True).select_related(
        "department"
    )
    return [k.code for k in kinds if _auto_grant_one(k, holder, actor=actor, at=at)]


@transaction.atomic
def entitlement_buy(
    *,
    type: str,
    card_no: str,
    idempotency_key: str,
    actor: str,
    at: dt.datetime | None = None,
) -> Entitlement:
    """A cardholder buys an entitlement (e.g. the park annual pass, 公园年卡) from the online account: one
    balanced posting to the department, the grant valid ``period_days`` from today. A retry with the same
    key returns the first grant and pays nothing again."""
    if not idempotency_key or len(idempotency_key) > 100:
        raise DomainError(_("an idempotency key of 1–100 characters is required"), field="idempotency_key")
    request_key = f"buy:{idempotency_key}"
    existing = Entitlement.objects.filter(request_key=request_key).select_related("type").first()
    if existing is not None:
        if existing.type.code != type:
            raise Conflict(
                _("idempotency key %(key)r bought %(code)s")
                % {"key": idempotency_key, "code": existing.type.code},
                field="idempotency_key",
            )
        return existing
    at = at or timezone.now()
    kind = _type(type)
    if not kind.price_fen:
        raise DomainError(_("%(code)s is not sold") % {"code": kind.code}, code="not_for_sale", field="type")
    card = Card.objects.filter(card_no=card_no, state__in=LIVE_STATES).select_related("cardholder").first()
    if card is None or card.cardholder is None:
        raise NotFound(_("no named card %(card)r here") % {"card": card_no}, field="card_no")
    day = _today(at)
    refusal = eligibility_refusal(kind, card.cardholder, on=day)
    if refusal:
        raise DomainError(
            _("not eligible for %(code)s (%(why)s)") % {"code": kind.code, "why": refusal},
            code="not_eligible",
            field="card_no",
        )
    if Entitlement.objects.filter(
        type=kind, cardholder_id=card.cardholder_id, revoked_at__isnull=True
    ).exists():
        raise Conflict(_("already holds %(code)s") % {"code": kind.code}, code="already_held", field="type")
    posting = account_pay(
        card_no=card_no,
        amount_fen=kind.price_fen,
        # The department sells the entitlement itself: its own payable, not a merchant's.
        payee=ledger_account_external(
            code=f"merchant:entitlement:{kind.department.code}", kind=AccountKind.MERCHANT
        ),
        idempotency_key=f"entitlement-buy:{idempotency_key}",
        memo=f"{kind.code} bought from {kind.department.code}",
        actor=actor,
        at=at,
    )
    return _grant(
        kind,
        card.cardholder,
        source=GrantSource.BOUGHT,
        valid_from=day,
        valid_to=day + dt.timedelta(days=kind.period_days - 1),
        actor=actor,
        at=at,
        request_key=request_key,
        posting_id=posting.pk,
    )


@transaction.atomic
def entitlement_revoke(
    *,
    entitlement_id: int,
    reason: str,
    actor: str,
    role: str,
    role_department: str = "",
    at: dt.datetime | None = None,
) -> Entitlement:
    """Withdraw a grant (撤销); it leaves the offline list at the next version. The acting user's role as
    for ``entitlement_grant``."""
    grant = (
        Entitlement.objects.select_for_update(of=("self",))
        .select_related("type__department")
        .filter(pk=entitlement_id)
        .first()
    )
    if grant is None:
        raise NotFound(_("no entitlement %(id)s") % {"id": entitlement_id}, field="entitlement_id")
    _grant_check(grant.type, role=role, role_department=role_department)
    if grant.revoked_at is not None:
        raise Conflict(
            _("entitlement %(id)s is already revoked") % {"id": entitlement_id}, field="entitlement_id"
        )
    if not (reason or "").strip():
        raise DomainError(_("a revocation states why"), field="reason")
    at = at or timezone.now()
    grant.revoked_at, grant.revoked_by, grant.revoke_reason = at, actor, reason.strip()
    grant.save(update_fields=["revoked_at", "revoked_by", "revoke_reason"])
    audit_record(
        action="entitlement.revoke",
        actor=actor,
        object_type="cardholder",
        object_id=grant.cardholder_id,
        data={
            "type": grant.type.code,
            "entitlement": grant.pk,
            "reason": grant.revoke_reason,
            "role": role,
        },
    )
    _list_apply(holder_ids=[grant.cardholder_id], at=at)
    return grant


# --- the offline list -----------------------------------------------------------------------------------


def _wanted_rows(holder_ids: Sequence[int] | None) -> set[tuple[str, str, dt.date, dt.date | None]]:
    """(card number, type, from, to) for every live card of the cardholders (all, when None) and each of
    their unrevoked grants of an approved type."""
    grants = Entitlement.objects.filter(revoked_at__isnull=True, type__status=TypeStatus.APPROVED)
    cards = Card.objects.filter(state__in=("issued", "active"), cardholder__isnull=False)
    if holder_ids is not None:
        grants, cards = (
            grants.filter(cardholder_id__in=holder_ids),
            cards.filter(cardholder_id__in=holder_ids),
        )
    by_holder: dict[int, list[str]] = {}
    for holder_id, card_no in cards.values_list("cardholder_id", "card_no"):
        by_holder.setdefault(holder_id, []).append(card_no)
    return {
        (card_no, code, start, end)
        for holder_id, code, start, end in grants.values_list(
            "cardholder_id", "type__code", "valid_from", "valid_to"
        )
        for card_no in by_holder.get(holder_id, ())
    }


def list_version_bump(*, at: dt.datetime) -> int:
    """Lock the offline list's head and take the next version (the caller writes that version's rows)."""
    EntitlementListHead.objects.get_or_create(pk=LIST_HEAD_PK)
    head = EntitlementListHead.objects.select_for_update().get(pk=LIST_HEAD_PK)
    head.version += 1
    head.changed_at = at
    head.save(update_fields=["version", "changed_at"])
    return head.version


_WANTED_SQL = """
    SELECT c.card_no, t.code, e.valid_from, e.valid_to
      FROM entitlements_entitlement e
      JOIN entitlements_entitlementtype t ON t.id = e.type_id
      JOIN cards_card c ON c.cardholder_id = e.cardholder_id
     WHERE e.revoked_at IS NULL AND t.status = 'approved' AND c.state IN ('issued', 'active')
"""


def _list_apply_sql(*, at: dt.datetime) -> int:
    """The whole offline list brought up to date in two statements (rows no longer wanted get the next
    version as removed; wanted rows not live are added with it); the version is bumped only when a row
    changed. Returns the version."""
    EntitlementListHead.objects.get_or_create(pk=LIST_HEAD_PK)
    head = EntitlementListHead.objects.select_for_update().get(pk=LIST_HEAD_PK)
    version = head.version + 1
    with connection.cursor() as cur:
        cur.execute(
            f"""WITH wanted AS ({_WANTED_SQL})
                UPDATE entitlements_entitlementlistentry l SET version_removed = %s
                 WHERE l.version_removed IS NULL AND l.home_tenant = ''
                   AND NOT EXISTS (
                       SELECT 1 FROM wanted w
                        WHERE w.card_no = l.card_no AND w.code = l.type_code
                          AND w.valid_from = l.valid_from AND w.valid_to IS NOT DISTINCT FROM l.valid_to)""",
            [version],
        )
        changed = cur.rowcount
        cur.execute(
            f"""INSERT INTO entitlements_entitlementlistentry
                    (card_no, type_code, valid_from, valid_to, version_added, home_tenant, message_id)
                SELECT w.card_no, w.code, w.valid_from, w.valid_to, %s, '', ''
                  FROM ({_WANTED_SQL}) w
                 WHERE NOT EXISTS (
                       SELECT 1 FROM entitlements_entitlementlistentry l
                        WHERE l.version_removed IS NULL AND l.card_no = w.card_no AND l.type_code = w.code
                          AND l.valid_from = w.valid_from AND l.valid_to IS NOT DISTINCT FROM w.valid_to)
                 ORDER BY w.card_no, w.code""",
            [version],
        )
        changed += cur.rowcount
    if not changed:
        return head.version
    head.version, head.changed_at = version, at
    head.save(update_fields=["version", "changed_at"])
    return version


def _list_apply(*, holder_ids: Sequence[int] | None, at: dt.datetime) -> int:
    """Bring the offline list's rows for these cardholders (all, when None: in SQL) up to date; bump the
    version when anything changed. Returns the version."""
    if holder_ids is None:
        return _list_apply_sql(at=at)
    EntitlementListHead.objects.get_or_create(pk=LIST_HEAD_PK)
    head = EntitlementListHead.objects.select_for_update().get(pk=LIST_HEAD_PK)
    wanted = _wanted_rows(holder_ids)
    live = EntitlementListEntry.objects.filter(version_removed__isnull=True, home_tenant="")
    if holder_ids is not None:
        numbers = list(Card.objects.filter(cardholder_id__in=holder_ids).values_list("card_no", flat=True))
        live = live.filter(card_no__in=numbers)
    have = {(e.card_no, e.type_code, e.valid_from, e.valid_to): e.pk for e in live}
    gone, new = set(have) - wanted, wanted - set(have)
    if not gone and not new:
        return head.version
    head.version += 1
    head.changed_at = at
    head.save(update_fields=["version", "changed_at"])
    EntitlementListEntry.objects.filter(pk__in=[have[row] for row in gone]).update(
        version_removed=head.version
    )
    EntitlementListEntry.objects.bulk_create(
        EntitlementListEntry(card_no=c, type_code=t, valid_from=f, valid_to=u, version_added=head.version)
        for c, t, f, u in sorted(new, key=lambda r: (r[0], r[1]))
    )
    return head.version


@transaction.atomic
def entitlement_list_refresh(*, at: dt.datetime | None = None) -> int:
    """Rebuild the whole offline list from the grants and cards (after cards were replaced, lost or
    cancelled); returns its version."""
    return _list_apply(holder_ids=None, at=at or timezone.now())


def entitlement_list_follow(*, cardholder_id: int, at: dt.datetime | None = None) -> int:
    """Bring one cardholder's rows of the offline list up to date (a card issued, lost or replaced). The
    list's rows come only from grants: a cardholder who never held one costs one query."""
    if not Entitlement.objects.filter(cardholder_id=cardholder_id).exists():
        return 0
    return _list_apply(holder_ids=[cardholder_id], at=at or timezone.now())
