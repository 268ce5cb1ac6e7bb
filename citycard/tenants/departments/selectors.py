"""Reading departments, the data-read log, and a county's onboarding checklist."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from django.db.models import Q, QuerySet

from citycard.platform.audit.models import AuditEntry
from citycard.platform.errors import DomainError, NotFound
from citycard.platform.keys import tenant_key_purposes
from citycard.platform.models import Tenant, TenantKey
from citycard.tenants.departments.models import (
    DataRead,
    Department,
    DepartmentKind,
    ServiceKind,
    ServicePoint,
)


def data_reads(*, cardholder_id: int) -> QuerySet[DataRead]:
    """Who read this cardholder's data, for which department, which fields and why, newest first."""
    return DataRead.objects.select_related("department", "grant").filter(cardholder_id=cardholder_id)


@dataclass(frozen=True)
class AccessLogEntry:
    """One read of a cardholder's data (个人信息查询记录): when, who, under which grant, key or session."""

    at: dt.datetime
    reader: str
    channel: str  # "grant", "api_key", "user", "admin"
    under: str  # the grant (department and number), the API key id, or the signed-in user
    fields: tuple[str, ...]
    purpose: str  # the stated reason, or the GraphQL operation / admin page


# Audit actions that are reads of personal data, with the channel they came through.
READ_ACTIONS = ("graphql.read", "admin.read")

# A read (``{"type", "ids", "fields", "path"}``, as citycard.graphql.core.context.AccessLog writes them)
# names a cardholder by id under these types, and by card number under any other.
_BY_HOLDER_ID = ("cardholder",)


def cardholder_access_log(
    *, cardholder_id: int, card_numbers: list[str] | None = None
) -> list[AccessLogEntry]:
    """Every read of one cardholder's data, newest first: departments' reads through their grants, partner
    apps' and users' GraphQL reads (of the cardholder, or of any of their cards, listings included) and
    officers' admin views. Two queries whatever the history's length: the read log and the audit chain."""
    from citycard.tenants.cards.models import Card

    if card_numbers is None:
        card_numbers = list(
            Card.objects.filter(cardholder_id=cardholder_id).values_list("card_no", flat=True)
        )
    out = [
        AccessLogEntry(
            at=read.at,
            reader=read.reader,
            channel="grant",
            under=f"{read.department.code} grant #{read.grant_id}",
            fields=tuple(read.fields),
            purpose=read.reason,
        )
        for read in data_reads(cardholder_id=cardholder_id)
    ]
    entries = AuditEntry.objects.filter(action__in=READ_ACTIONS).extra(
        where=[
            "EXISTS (SELECT 1 FROM jsonb_array_elements(payload::jsonb -> 'reads') AS r"
            " WHERE (r ->> 'type' = ANY(%s) AND r -> 'ids' ? %s) OR r -> 'ids' ?| %s)"
        ],
        params=[list(_BY_HOLDER_ID), str(cardholder_id), card_numbers],
    )
    for entry in entries.order_by("-seq"):
        payload = json.loads(entry.payload)
        mine = [
            r
            for r in payload.get("reads", ())
            if (r.get("type") in _BY_HOLDER_ID and str(cardholder_id) in r.get("ids", ()))
            or set(card_numbers) & set(r.get("ids", ()))
        ]
        fields = sorted({f for r in mine for f in r.get("fields") or ()})
        if entry.action == "admin.read":
            channel, under, purpose = "admin", entry.actor, payload.get("page", "")
        else:
            channel = entry.object_type or "user"
            channel = "api_key" if channel == "apikey" else channel
            under, purpose = entry.object_id, payload.get("operation") or "GraphQL"
        out.append(
            AccessLogEntry(
                at=entry.at,
                reader=entry.actor,
                channel=channel,
                under=under,
                fields=tuple(fields),
                purpose=purpose,
            )
        )
    out.sort(key=lambda e: e.at, reverse=True)
    return out


@dataclass(frozen=True)
class ChecklistItem:
    key: str
    label: str
    done: bool
    detail: str


def onboarding_checklist(*, tenant: Tenant) -> list[ChecklistItem]:
    """What a county (or city) still lacks before it runs (入驻清单): departments, service points,
    terminals, keys, and for a county the city's card schemes it works with."""
    from citycard.tenants.terminals.models import Terminal, TerminalStatus

    departments = Department.objects.count()
    points = ServicePoint.objects.filter(active=True).count()
    terminals = Terminal.objects.filter(status=TerminalStatus.ACTIVE).count()
    purposes = set(
        TenantKey.objects.filter(tenant=tenant, retired_at__isnull=True).values_list("purpose", flat=True)
    )
    missing_keys = sorted(set(tenant_key_purposes(tenant=tenant)) - purposes)
    items = [
        ChecklistItem("departments", "Departments onboarded", departments > 0, f"{departments} departments"),
        ChecklistItem("service_points", "Service points open", points > 0, f"{points} active service points"),
        ChecklistItem("terminals", "Terminals registered", terminals > 0, f"{terminals} active terminals"),
        ChecklistItem(
            "keys",
            "Signing and data keys (a city: its card TAC master too)",
            not missing_keys,
            "present" if not missing_keys else f"missing: {', '.join(missing_keys)}",
        ),
    ]
    from citycard.platform.publications import publication_latest

    owner = "city's" if tenant.kind == "county" else "own"
    try:
        publication = publication_latest(tenant=tenant, kind="card-schemes", inherit=True)
        schemes = (True, f"{owner} schemes version {publication.version}")
    except NotFound:
        schemes = (False, f"the {owner} card schemes are not published yet")
    items.append(ChecklistItem("card_schemes", "Card schemes published", *schemes))
    return items


def service_points_search(
    *, department_kind: str | None = None, service: str | None = None, text: str | None = None
) -> QuerySet[ServicePoint]:
    """Open service points (服务网点), with their departments: of a department kind, offering a service,
    and/or whose name, address or department name contains ``text``. Unknown kinds or services are a
    DomainError naming the field."""
    qs = ServicePoint.objects.filter(active=True).select_related("department")
    if department_kind:
        if department_kind not in DepartmentKind.values:
            raise DomainError(
                f"unknown department kind {department_kind!r} (one of: {', '.join(DepartmentKind.values)})",
                field="department_kind",
            )
        qs = qs.filter(department__kind=department_kind)
    if service:
        if service not in ServiceKind.values:
            raise DomainError(
                f"unknown service {service!r} (one of: {', '.join(ServiceKind.values)})", field="service"
            )
        qs = qs.filter(services__contains=[service])
    words = (text or "").split()
    for word in words:
        qs = qs.filter(
            Q(name__icontains=word) | Q(address__icontains=word) | Q(department__name__icontains=word)
        )
    return qs
