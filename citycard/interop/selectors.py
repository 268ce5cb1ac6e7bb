"""Reading clearing results: a cycle's summary, matrix, positions, instructions and trace to records."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from django.db.models import Count, Sum
from django.utils import timezone

from citycard.interop.models import (
    BilateralPosition,
    ClearingCycle,
    ClearingRecord,
    NetPosition,
    ReconciliationFile,
    RoamingAgreement,
    Service,
    SettlementInstruction,
    VisitorPolicy,
)
from citycard.platform.models import Tenant
from citycard.platform.selectors import tenant_networks

# The agreement's visitor policy as the fare rule document says it (docs/fares.md, "Who rides").
FARE_POLICY = {
    VisitorPolicy.LOCAL_FARE: "no_concession",
    VisitorPolicy.LOCAL_DISCOUNTS: "host_rules",
    VisitorPolicy.HOME_CATEGORIES: "home_category",
}


def agreed_visitor_policies(*, tenant: Tenant, on: dt.date | None = None) -> dict[str, tuple[str, str]]:
    """{network: (fare-document policy, agreement)} for the transit agreements in force on ``on`` (default
    today, Asia/Shanghai) of the networks the tenant (its city, for a county) is a member of. Registered
    with the fare rules (tenants.fares.selectors) by InteropConfig.ready."""
    on = on or timezone.localdate()
    agreements = RoamingAgreement.objects.filter(
        service=Service.TRANSIT, valid_from__lte=on, network__in=tenant_networks(tenant=tenant, on=on)
    ).select_related("network")
    return {
        a.network.code: (FARE_POLICY[VisitorPolicy(a.visitor_policy)], f"{a.network.code}-transit")
        for a in agreements
    }


def cycle_summary(*, cycle: ClearingCycle) -> dict[str, Any]:
    """Everything a cycle produced, in a stable form (two runs of a cycle compare equal)."""
    statuses = {
        row["status"]: {"records": row["n"], "amount_fen": row["s"] or 0}
        for row in ClearingRecord.objects.filter(cycle=cycle)
        .values("status")
        .annotate(n=Count("id"), s=Sum("amount_fen"))
    }
    rejected = dict(
        ClearingRecord.objects.filter(cycle=cycle, status="rejected")
        .values("reason")
        .annotate(n=Count("id"))
        .values_list("reason", "n")
    )
    return {
        "cycle": f"{cycle.agreement.network.code}-{cycle.agreement.service}-{cycle.business_date.isoformat()}",
        "state": cycle.state,
        "records": statuses,
        "rejected_by_reason": rejected,
        "matrix": bilateral_matrix(cycle=cycle),
        "positions": net_positions(cycle=cycle),
        "instructions": settlement_instructions(cycle=cycle),
        "files": {
            f.participant: f.sha256
            for f in ReconciliationFile.objects.filter(cycle=cycle).order_by("participant")
        },
    }


def bilateral_matrix(*, cycle: ClearingCycle) -> list[dict[str, Any]]:
    return list(
        BilateralPosition.objects.filter(cycle=cycle)
        .order_by("issuer", "acquirer")
        .values(
            "issuer",
            "acquirer",
            "records",
            "amount_fen",
            "issuer_fee_fen",
            "network_fee_fen",
            "acquirer_due_fen",
        )
    )


def net_positions(*, cycle: ClearingCycle) -> list[dict[str, Any]]:
    return list(
        NetPosition.objects.filter(cycle=cycle)
        .order_by("participant")
        .values("participant", "receivable_fen", "payable_fen", "net_fen")
    )


def settlement_instructions(*, cycle: ClearingCycle) -> list[dict[str, Any]]:
    return [
        {**row, "value_date": row["value_date"].isoformat()}
        for row in SettlementInstruction.objects.filter(cycle=cycle)
        .order_by("id")
        .values("payer", "payee", "amount_fen", "value_date")
    ]


def position_trace(*, cycle: ClearingCycle, issuer: str, acquirer: str):
    """The records behind one cell of the matrix (valid ones, as netted)."""
    return ClearingRecord.objects.filter(
        cycle=cycle, issuer=issuer, acquirer=acquirer, status="valid"
    ).order_by("record_id")


def summary_digest(summary: dict[str, Any]) -> str:
    return hashlib.sha256(repr(sorted(summary.items())).encode()).hexdigest()
