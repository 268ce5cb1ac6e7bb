"""Reading departments, the data-read log, and a county's onboarding checklist."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db.models import Q, QuerySet
from django.urls import reverse
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from citycard.platform.audit.models import AuditEntry
from citycard.platform.errors import DomainError, NotFound
from citycard.platform.keys import tenant_key_purposes, tenant_verify
from citycard.platform.models import Domain, Tenant, TenantKey
from citycard.platform.publications import publication_latest
from citycard.tenants.cards.selectors import AccessLogEntry
from citycard.tenants.departments.models import (
    DataRead,
    Department,
    DepartmentKind,
    ServiceKind,
    ServicePoint,
)
from citycard.tenants.terminals.models import Terminal, TerminalStatus
from citycard.terminal_kit.signing import SignatureError


def data_reads(*, cardholder_id: int) -> QuerySet[DataRead]:
    """Who read this cardholder's data, for which department, which fields and why, newest first."""
    return DataRead.objects.select_related("department", "grant").filter(cardholder_id=cardholder_id)


def grant_reads(*, cardholder_id: int) -> list[AccessLogEntry]:
    """Departments' reads of a cardholder's data through their grants, as access-log entries: the part of
    ``cards.selectors.cardholder_access_log`` this app contributes (registered in ``apps.ready``). One
    query."""
    return [
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


@dataclass(frozen=True)
class ChecklistItem:
    """One step of onboarding (入驻): done or not, what there is, who did it and when, who does it and
    where (an admin page of ``admin_tenant``'s site, a command)."""

    key: str
    label: str
    done: bool
    detail: str
    done_by: str = ""
    done_at: dt.datetime | None = None
    who: str = ""  # who does this step: county officer / city administrator / platform operator
    admin_tenant: str = ""  # whose admin site the page is on ("" : none)
    admin_path: str = ""
    command: str = ""


def _first_audit(action: str) -> AuditEntry | None:
    return AuditEntry.objects.filter(action=action).order_by("seq").first()


def onboarding_checklist(*, tenant: Tenant) -> list[ChecklistItem]:
    """What a county (or city) has and still lacks before it runs (入驻清单), run in its own schema:
    departments, service points, active terminals, keys, and the (city's) published card schemes; each
    with who did it and when (from the audit chain, the registry, the key vault, the publication) and
    where it is done."""
    officer = _("county officer") if tenant.kind == "county" else _("city administrator")
    city = tenant.clearing_tenant
    items = []

    departments = Department.objects.count()
    first = _first_audit("department.create")
    oldest = Department.objects.order_by("created_at").first()
    items.append(
        ChecklistItem(
            "departments",
            _("Departments onboarded"),
            departments > 0,
            ngettext("%(n)s department", "%(n)s departments", departments) % {"n": departments},
            done_by=first.actor if first else "",
            done_at=first.at if first else (oldest.created_at if oldest else None),
            who=officer,
            admin_tenant=tenant.code,
            admin_path=reverse("tenant_admin:departments_department_add"),
            command=f"citycard departments --tenant {tenant.code} create CODE --kind … --name …",
        )
    )

    points = ServicePoint.objects.filter(active=True).count()
    first = _first_audit("service_point.create")
    items.append(
        ChecklistItem(
            "service_points",
            _("Service points open"),
            points > 0,
            ngettext("%(n)s active service point", "%(n)s active service points", points) % {"n": points},
            done_by=first.actor if first and points else "",
            done_at=first.at if first and points else None,
            who=officer,
            admin_tenant=tenant.code,
            admin_path=reverse("tenant_admin:departments_servicepoint_add"),
            command=f"citycard departments --tenant {tenant.code} service-point-add DEPARTMENT CODE …",
        )
    )

    active = Terminal.objects.filter(status=TerminalStatus.ACTIVE)
    terminals = active.count()
    first_terminal = active.order_by("registered_at").first()
    items.append(
        ChecklistItem(
            "terminals",
            _("Terminals registered"),
            terminals > 0,
            ngettext("%(n)s active terminal", "%(n)s active terminals", terminals) % {"n": terminals},
            done_by=first_terminal.registered_by if first_terminal else "",
            done_at=first_terminal.registered_at if first_terminal else None,
            who=officer,
            admin_tenant=tenant.code,
            admin_path=reverse("tenant_admin:terminals_terminal_add"),
            command=f"citycard terminal --tenant {tenant.code} register …",
        )
    )

    keys = TenantKey.objects.filter(tenant=tenant, retired_at__isnull=True)
    purposes = set(keys.values_list("purpose", flat=True))
    missing_keys = sorted(set(tenant_key_purposes(tenant=tenant)) - purposes)
    newest = keys.order_by("-created_at").first()
    items.append(
        ChecklistItem(
            "keys",
            _("Signing and data keys (a city: its card TAC master too)"),
            not missing_keys,
            _("present") if not missing_keys else _("missing: %(keys)s") % {"keys": ", ".join(missing_keys)},
            done_by="platform" if newest and not missing_keys else "",
            done_at=newest.created_at if newest and not missing_keys else None,
            who=_("platform operator"),
            command=(
                f"citycard keys rotate --tenant {tenant.code} --purpose {missing_keys[0]}"
                if missing_keys
                else f"citycard keys list --tenant {tenant.code}"
            ),
        )
    )

    try:
        publication = publication_latest(tenant=tenant, kind="card-schemes", inherit=True)
        schemes = (
            True,
            _("%(owner)s schemes version %(version)s") % {"owner": city.code, "version": publication.version},
            publication.published_by,
            publication.published_at,
        )
    except NotFound:
        schemes = (
            False,
            _("%(owner)s has not published its card schemes yet") % {"owner": city.code},
            "",
            None,
        )
    done, detail, by, at = schemes
    items.append(
        ChecklistItem(
            "card_schemes",
            _("Card schemes published"),
            done,
            detail,
            done_by=by,
            done_at=at,
            who=_("city administrator"),
            admin_tenant=city.code,
            admin_path=reverse("tenant_admin:cards_cardscheme_changelist"),
            command=f"citycard cards --tenant {city.code} schemes --publish",
        )
    )
    return items


@dataclass(frozen=True)
class TenantOnboarding:
    """A tenant's checklist: computed here for the tenant itself; for a county seen by its city, as the
    county last published it (``published_at``; None when it has published none yet)."""

    tenant: Tenant
    items: list[ChecklistItem]
    published_at: dt.datetime | None = None
    own: bool = True
    problem: str = ""  # a county's publication that does not verify: shown instead of its steps

    @property
    def missing(self) -> list[ChecklistItem]:
        return [i for i in self.items if not i.done]


ONBOARDING_KIND = "onboarding"


def checklist_payload(items: list[ChecklistItem]) -> dict[str, Any]:
    """What a county publishes of its checklist for its city (labels as said in the default language)."""
    return {
        "steps": [
            {
                "key": i.key,
                "label": str(i.label),
                "done": i.done,
                "detail": str(i.detail),
                "done_by": i.done_by,
                "done_at": i.done_at.isoformat() if i.done_at else None,
                "who": str(i.who),
                "admin_tenant": i.admin_tenant,
                "admin_path": i.admin_path,
                "command": i.command,
            }
            for i in items
        ]
    }


def _published_checklist(county: Tenant) -> TenantOnboarding:
    """A county's checklist as it published it, its signature verified: the city reads the county's
    publication, never the county's schema."""
    try:
        publication = publication_latest(tenant=county, kind=ONBOARDING_KIND)
    except NotFound:
        return TenantOnboarding(county, [], None, own=False)
    try:
        _, payload = tenant_verify(document=publication.document, tenant=county)
    except SignatureError as exc:
        return TenantOnboarding(county, [], publication.published_at, own=False, problem=str(exc))
    items = [
        ChecklistItem(
            **{**step, "done_at": dt.datetime.fromisoformat(step["done_at"]) if step["done_at"] else None}
        )
        for step in payload["steps"]
    ]
    return TenantOnboarding(county, items, publication.published_at, own=False)


def onboarding_overview(*, tenant: Tenant) -> list[TenantOnboarding]:
    """The checklist of ``tenant`` (computed in its own schema, the current one) and, for a city, each of
    its counties' as the county last published it (``departments.services.onboarding_publish``)."""
    out = [TenantOnboarding(tenant, onboarding_checklist(tenant=tenant))]
    if tenant.kind != "county":
        for county in Tenant.objects.filter(parent=tenant).order_by("division_code"):
            out.append(_published_checklist(county))
    return out


def admin_hosts(*, tenant: Tenant) -> dict[str, str]:
    """The host each admin site the checklist links to answers on (tenant code → primary domain): the
    tenant's, its city's and its counties'."""
    city = tenant.clearing_tenant
    rows = Domain.objects.filter(is_primary=True).filter(
        Q(tenant=tenant) | Q(tenant=city) | Q(tenant__parent=city)
    )
    return dict(rows.values_list("tenant__code", "domain"))


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
                gettext("unknown department kind %(department_kind)r (one of: %(values)s)")
                % {"department_kind": department_kind, "values": ", ".join(DepartmentKind.values)},
                field="department_kind",
            )
        qs = qs.filter(department__kind=department_kind)
    if service:
        if service not in ServiceKind.values:
            raise DomainError(
                gettext("unknown service %(service)r (one of: %(values)s)")
                % {"service": service, "values": ", ".join(ServiceKind.values)},
                field="service",
            )
        qs = qs.filter(services__contains=[service])
    words = (text or "").split()
    for word in words:
        qs = qs.filter(
            Q(name__icontains=word) | Q(address__icontains=word) | Q(department__name__icontains=word)
        )
    return qs


def departments_with_points() -> QuerySet[Department]:
    """The tenant's departments (部门) with their service points and data grants, by code."""
    return Department.objects.prefetch_related("service_points", "grants").order_by("code")
