"""Reading entitlements: a cardholder's, a department's types, and the signed offline list terminals sync."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import connection
from django.db.models import QuerySet

from citycard.platform.keys import tenant_sign
from citycard.tenants.entitlements.models import (
    Entitlement,
    EntitlementListEntry,
    EntitlementListHead,
    EntitlementType,
    EntitlementUse,
    TypeStatus,
    VisitorList,
)

LIST_KIND = "entitlements"


def entitlements_of(*, cardholder_id: int, include_revoked: bool = False) -> QuerySet[Entitlement]:
    """A cardholder's entitlements with their types and departments (newest grant first)."""
    qs = Entitlement.objects.select_related("type", "type__department").filter(cardholder_id=cardholder_id)
    if not include_revoked:
        qs = qs.filter(revoked_at__isnull=True)
    return qs.order_by("-granted_at", "-id")


def entitlement_types(
    *, department: str | None = None, status: str | None = None
) -> QuerySet[EntitlementType]:
    qs = EntitlementType.objects.select_related("department")
    if department:
        qs = qs.filter(department__code=department)
    if status:
        qs = qs.filter(status=status)
    return qs.order_by("code")


def entitlement_uses(*, entitlement_id: int) -> QuerySet[EntitlementUse]:
    return EntitlementUse.objects.filter(entitlement_id=entitlement_id).order_by("-at", "-id")


def entitlement_list_version() -> int:
    return EntitlementListHead.objects.filter(pk=1).values_list("version", flat=True).first() or 0


def _types_document() -> dict[str, Any]:
    """What a terminal needs of each approved type to decide offline: quota and where it is accepted."""
    return {
        t.code: {
            "quota": t.quota,
            "quota_period": t.quota_period,
            "service_points": list(t.service_points),
        }
        for t in EntitlementType.objects.filter(status=TypeStatus.APPROVED).order_by("code")
    }


def _code_issuers_document() -> dict[str, Any]:
    """The visitors' home tenants' citizen-code keys, as their signed visitor lists named them (several by
    key id while a rotation overlaps), and the card divisions each issues: a gate verifies a visitor's code
    offline with them (terminal_kit.entitlements.EntitlementList.code_issuers), in full in every list and
    delta (a few keys a home)."""
    return {
        home: {"divisions": list(divisions), "keys": keys}
        for home, divisions, keys in VisitorList.objects.exclude(code_keys={})
        .order_by("home_tenant")
        .values_list("home_tenant", "divisions", "code_keys")
    }


def _row(card_no: str, type_code: str, start: dt.date, end: dt.date | None) -> list[Any]:
    return [card_no, type_code, start.isoformat(), end.isoformat() if end else None]


def entitlement_list_payload(*, since: int | None = None) -> dict[str, Any]:
    """The offline entitlement list (离线权益名单) as terminal_kit.entitlements takes it: the full list
    (``entries``: [card number, type, from, to]), or the delta since ``since`` (``added`` rows and
    ``removed`` [card number, type] pairs). A ``since`` newer than the current version gets the full list."""
    version = entitlement_list_version()
    entries = EntitlementListEntry.objects.all()
    base: dict[str, Any] = {
        "kind": LIST_KIND,
        "version": version,
        "types": _types_document(),
        "code_issuers": _code_issuers_document(),
    }
    if since is None or since < 0 or since > version:
        rows = entries.filter(version_removed__isnull=True).order_by("card_no", "type_code")
        base["entries"] = [
            _row(*r) for r in rows.values_list("card_no", "type_code", "valid_from", "valid_to")
        ]
        return base
    added = entries.filter(version_removed__isnull=True, version_added__gt=since).order_by(
        "card_no", "type_code"
    )
    removed = entries.filter(version_added__lte=since, version_removed__gt=since).order_by(
        "card_no", "type_code"
    )
    base["delta"] = {
        "since": since,
        "added": [_row(*r) for r in added.values_list("card_no", "type_code", "valid_from", "valid_to")],
        "removed": [list(r) for r in removed.values_list("card_no", "type_code")],
    }
    return base


def entitlement_list_document(*, since: int | None = None) -> dict[str, Any]:
    """The list signed with the tenant's key, as the terminal route serves it."""
    tenant = connection.tenant
    return tenant_sign(
        tenant=tenant, payload={**entitlement_list_payload(since=since), "tenant": tenant.code}
    )
