"""Taps stored in a tenant's schema as the ingestion would, for the dashboard's tests."""

from __future__ import annotations

import datetime as dt

from django_tenants.utils import tenant_context


def taps_store(tenant, rows: list[tuple[dt.datetime, str, str, int]]) -> None:
    """Store taps (tapped at, issuer, routing, amount) as the ingestion would, in the tenant's schema."""
    from citycard.tenants.terminals.models import Transaction
    from citycard.tenants.terminals.partitions import month_of, partitions_ensure

    with tenant_context(tenant):
        partitions_ensure({month_of(when) for when, *_rest in rows})
        Transaction.objects.bulk_create(
            Transaction(
                tapped_at=when,
                received_at=when,
                batch_id=1,
                idx=i,
                terminal_id="T-1",
                terminal_seq=i + 1,
                card_no=f"3301000000{i:06d}",
                issuer=issuer,
                card_counter=i + 1,
                amount_fen=amount,
                balance_before_fen=10000,
                balance_after_fen=10000 - amount,
                service="bus",
                tac="00",
                terminal_no="000000000001",
                algorithm=4,
                kind="purchase",
                status="accepted",
                rule_version=1,
                hotlist_version=0,
                acquirer=tenant.code,
                routing=routing,
            )
            for i, (when, issuer, routing, amount) in enumerate(rows)
        )
