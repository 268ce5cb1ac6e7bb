"""Reading departments, the data-read log, and a county's onboarding checklist."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet

from citycard.platform.errors import NotFound
from citycard.platform.models import KeyPurpose, Tenant, TenantKey
from citycard.tenants.departments.models import DataRead, Department, ServicePoint


def data_reads(*, cardholder_id: int) -> QuerySet[DataRead]:
    """Who read this cardholder's data, for which department, which fields and why, newest first."""
    return DataRead.objects.select_related("department", "grant").filter(cardholder_id=cardholder_id)


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
    missing_keys = sorted(set(KeyPurpose.values) - purposes)
    items = [
        ChecklistItem("departments", "Departments onboarded", departments > 0, f"{departments} departments"),
        ChecklistItem("service_points", "Service points open", points > 0, f"{points} active service points"),
        ChecklistItem("terminals", "Terminals registered", terminals > 0, f"{terminals} active terminals"),
        ChecklistItem(
            "keys",
            "Signing and data keys",
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
