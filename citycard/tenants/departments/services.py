"""Onboarding departments and service points, granting data, and reading cardholder data through a grant.

Every read through a grant is logged (谁使用、谁负责): who, for which department, whose data, which fields,
why. A read that no grant covers is refused and nothing is decrypted.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from citycard.platform.audit.services import audit_record
from citycard.platform.errors import Conflict, DomainError, NotFound
from citycard.platform.models import Tenant
from citycard.platform.publications import publication_publish
from citycard.tenants.cards.models import Cardholder, CardholderCategory
from citycard.tenants.cards.selectors import cardholder_pii, cards_of
from citycard.tenants.departments.models import (
    DataGrant,
    DataRead,
    Department,
    DepartmentKind,
    PiiField,
    ServiceKind,
    ServicePoint,
)
from citycard.tenants.departments.selectors import (
    ONBOARDING_KIND,
    ChecklistItem,
    checklist_payload,
    onboarding_checklist,
)
from citycard.terminal_kit.beijing import BEIJING

_CODE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


def _code(value: str, field: str = "code") -> str:
    if not _CODE.match(value or ""):
        raise DomainError(
            gettext("%(field)s %(value)r must be a lower-case code (letters, digits, - or _)")
            % {"field": field, "value": value},
            field=field,
        )
    return value


def _department(code: str) -> Department:
    department = Department.objects.filter(code=code).first()
    if department is None:
        raise NotFound(gettext("no department %(code)r here") % {"code": code}, field="department")
    return department


@transaction.atomic
def department_create(*, code: str, kind: str, name: str, contact: str = "", actor: str) -> Department:
    """Onboard a department (部门入驻): 人社, 公安, 卫健, 医保, 交通, 民政, 文旅, 教育, 财政, 残联, bank, …"""
    _code(code)
    if kind not in DepartmentKind.values:
        raise DomainError(
            gettext("unknown department kind %(kind)r; use %(values)s")
            % {"kind": kind, "values": ", ".join(DepartmentKind.values)},
            field="kind",
        )
    if not (name or "").strip():
        raise DomainError(gettext("a department needs a name"), field="name")
    if Department.objects.filter(code=code).exists():
        raise Conflict(gettext("department %(code)s already exists") % {"code": code}, field="code")
    department = Department.objects.create(code=code, kind=kind, name=name.strip(), contact=contact)
    audit_record(
        action="department.create",
        actor=actor,
        object_type="department",
        object_id=code,
        data={"kind": kind, "name": department.name},
    )
    return department


@transaction.atomic
def service_point_create(
    *, department: str, code: str, name: str, address: str, hours: str, services: Iterable[str], actor: str
) -> ServicePoint:
    """Open a service window (服务网点) of a department, with its address, hours and services."""
    dept = _department(department)
    _code(code)
    services = list(services)
    bad = [s for s in services if s not in ServiceKind.values]
    if not services or bad:
        raise DomainError(
            gettext("services must be some of %(values)s") % {"values": ", ".join(ServiceKind.values)}
            + (gettext("; unknown: %(bad)s") % {"bad": ", ".join(bad)} if bad else ""),
            field="services",
        )
    for field, value in (("name", name), ("address", address), ("hours", hours)):
        if not (value or "").strip():
            raise DomainError(gettext("a service point needs %(field)s") % {"field": field}, field=field)
    if ServicePoint.objects.filter(code=code).exists():
        raise Conflict(gettext("service point %(code)s already exists") % {"code": code}, field="code")
    point = ServicePoint.objects.create(
        department=dept,
        code=code,
        name=name.strip(),
        address=address.strip(),
        hours=hours.strip(),
        services=services,
    )
    audit_record(
        action="service_point.create",
        actor=actor,
        object_type="service_point",
        object_id=code,
        data={"department": department, "services": services},
    )
    return point


@transaction.atomic
def department_update(*, code: str, kind: str, name: str, contact: str = "", actor: str) -> Department:
    """Change a department's kind, name or contact (its code stays); audited with what it was."""
    department = Department.objects.select_for_update().filter(code=code).first()
    if department is None:
        raise NotFound(gettext("no department %(code)r here") % {"code": code}, field="code")
    if kind not in DepartmentKind.values:
        raise DomainError(
            gettext("unknown department kind %(kind)r; use %(values)s")
            % {"kind": kind, "values": ", ".join(DepartmentKind.values)},
            field="kind",
        )
    if not (name or "").strip():
        raise DomainError(gettext("a department needs a name"), field="name")
    after = {"kind": kind, "name": name.strip(), "contact": contact}
    return _update_audited(department, after, object_type="department", code=code, actor=actor)


def _update_audited(row: Any, after: dict[str, Any], *, object_type: str, code: str, actor: str) -> Any:
    """Save ``after`` onto ``row`` and audit what it was and is (``<object_type>.update``); nothing when
    nothing changes."""
    before = {f: getattr(row, f) for f in after}
    if before == after:
        return row
    for field, value in after.items():
        setattr(row, field, value)
    row.save(update_fields=list(after))
    audit_record(
        action=f"{object_type}.update",
        actor=actor,
        object_type=object_type,
        object_id=code,
        data={"before": before, "after": after},
    )
    return row


@transaction.atomic
def service_point_update(
    *,
    code: str,
    name: str,
    address: str,
    hours: str,
    services: Iterable[str],
    active: bool = True,
    actor: str,
) -> ServicePoint:
    """Change a service window's name, address, hours, services, or close it (``active`` false)."""
    point = ServicePoint.objects.select_for_update().filter(code=code).first()
    if point is None:
        raise NotFound(gettext("no service point %(code)r here") % {"code": code}, field="code")
    services = list(services)
    bad = [s for s in services if s not in ServiceKind.values]
    if not services or bad:
        raise DomainError(
            gettext("services must be some of %(values)s") % {"values": ", ".join(ServiceKind.values)}
            + (gettext("; unknown: %(bad)s") % {"bad": ", ".join(bad)} if bad else ""),
            field="services",
        )
    for field, value in (("name", name), ("address", address), ("hours", hours)):
        if not (value or "").strip():
            raise DomainError(gettext("a service point needs %(field)s") % {"field": field}, field=field)
    after = {
        "name": name.strip(),
        "address": address.strip(),
        "hours": hours.strip(),
        "services": services,
        "active": active,
    }
    return _update_audited(point, after, object_type="service_point", code=code, actor=actor)


@transaction.atomic
def data_grant_create(
    *,
    department: str,
    fields: Iterable[str],
    purpose: str,
    valid_from: dt.date,
    valid_to: dt.date | None = None,
    actor: str,
) -> DataGrant:
    """Let a department read some cardholder fields for a stated purpose (数据授权)."""
    dept = _department(department)
    fields = sorted(set(fields))
    bad = [f for f in fields if f not in PiiField.values]
    if not fields or bad:
        raise DomainError(
            gettext("fields must be some of %(values)s") % {"values": ", ".join(PiiField.values)},
            field="fields",
        )
    if not (purpose or "").strip():
        raise DomainError(gettext("a grant states its purpose"), field="purpose")
    if valid_to is not None and valid_to < valid_from:
        raise DomainError(gettext("the grant ends before it starts"), field="valid_to")
    grant = DataGrant.objects.create(
        department=dept,
        fields=fields,
        purpose=purpose.strip(),
        valid_from=valid_from,
        valid_to=valid_to,
        granted_by=actor,
    )
    audit_record(
        action="data_grant.create",
        actor=actor,
        object_type="data_grant",
        object_id=grant.pk,
        data={"department": department, "fields": fields, "purpose": grant.purpose},
    )
    return grant


@transaction.atomic
def data_grant_revoke(*, grant_id: int, actor: str) -> DataGrant:
    grant = DataGrant.objects.select_for_update().filter(pk=grant_id).first()
    if grant is None:
        raise NotFound(gettext("no data grant %(grant_id)s") % {"grant_id": grant_id}, field="grant_id")
    if grant.revoked_at is not None:
        raise Conflict(
            gettext("data grant %(grant_id)s is already revoked") % {"grant_id": grant_id}, field="grant_id"
        )
    grant.revoked_at = timezone.now()
    grant.save(update_fields=["revoked_at"])
    audit_record(action="data_grant.revoke", actor=actor, object_type="data_grant", object_id=grant.pk)
    return grant


@transaction.atomic
def cardholder_read(
    *,
    department: str,
    cardholder_id: int,
    fields: Iterable[str],
    reader: str,
    reason: str,
    at: dt.datetime | None = None,
) -> dict[str, Any]:
    """Read a cardholder's fields for a department through its grant; the read is logged. Refused (and not
    logged as a read) when no grant in force covers every field asked for."""
    dept = _department(department)
    fields = sorted(set(fields))
    bad = [f for f in fields if f not in PiiField.values]
    if not fields or bad:
        raise DomainError(
            gettext("fields must be some of %(values)s") % {"values": ", ".join(PiiField.values)},
            field="fields",
        )
    if not (reason or "").strip():
        raise DomainError(gettext("every read states why (谁使用、谁负责)"), field="reason")
    if not (reader or "").strip():
        raise DomainError(gettext("every read names who reads"), field="reader")
    at = at or timezone.now()
    day = at.astimezone(BEIJING).date()
    grant = None
    for candidate in DataGrant.objects.filter(department=dept, revoked_at__isnull=True, valid_from__lte=day):
        if (candidate.valid_to is None or candidate.valid_to >= day) and set(fields) <= set(candidate.fields):
            grant = candidate
            break
    if grant is None:
        audit_record(
            action="data_read.refused",
            actor=reader,
            object_type="cardholder",
            object_id=cardholder_id,
            data={"department": department, "fields": fields, "reason": reason},
        )
        raise DomainError(
            gettext("department %(department)s has no grant in force for %(fields)s")
            % {"department": department, "fields": ", ".join(fields)},
            code="no_grant",
            field="fields",
        )
    holder = Cardholder.objects.filter(pk=cardholder_id).first()
    if holder is None:
        raise NotFound(
            gettext("no cardholder %(cardholder_id)s") % {"cardholder_id": cardholder_id},
            field="cardholder_id",
        )
    out: dict[str, Any] = {}
    sealed = {"id_number", "phone", "address", "birth_date"}
    secret = cardholder_pii(cardholder=holder) if sealed & set(fields) else {}
    for field in fields:
        if field in sealed:
            out[field] = secret[field]
        elif field == "categories":
            out[field] = sorted(
                CardholderCategory.objects.filter(cardholder=holder, valid_from__lte=day)
                .exclude(valid_to__lt=day)
                .values_list("code", flat=True)
            )
        elif field == "cards":
            out[field] = [
                {"card_no": c.card_no, "scheme": c.scheme.code, "state": c.state}
                for c in cards_of(cardholder_id=holder.pk)
            ]
        else:
            value = getattr(holder, field)
            out[field] = value.isoformat() if isinstance(value, dt.date) else value
    DataRead.objects.create(
        grant=grant,
        department=dept,
        cardholder_id=holder.pk,
        reader=reader,
        fields=fields,
        reason=reason.strip(),
        at=at,
    )
    return out


@transaction.atomic
def onboarding_publish(*, tenant: Tenant, actor: str) -> list[ChecklistItem]:
    """A county's checklist (入驻清单), computed in its own schema (the current one) and published signed
    for its city (publication kind ``onboarding``): the city's overview reads the publication, never the
    county's schema. An unchanged checklist publishes nothing new. Returns the checklist."""
    if tenant.kind != "county":
        raise DomainError(
            gettext("%(tenant)s is a city: only counties publish their checklist") % {"tenant": tenant.code},
            field="tenant",
        )
    items = onboarding_checklist(tenant=tenant)
    publication_publish(tenant=tenant, kind=ONBOARDING_KIND, payload=checklist_payload(items), actor=actor)
    return items
