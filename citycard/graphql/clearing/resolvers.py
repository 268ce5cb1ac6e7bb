"""Clearing reads for the platform endpoint: thin over citycard.interop.selectors."""

from __future__ import annotations

import datetime as dt
from typing import Any

from graphql_relay import from_global_id

from citycard.graphql.clearing.types import ClearingCycleConnection, DisputeConnection
from citycard.graphql.core.connection import Key, keyset_page
from citycard.graphql.core.errors import ApiError, ApiErrorCode
from citycard.graphql.core.types import enum_value
from citycard.interop import selectors
from citycard.interop.models import ClearingCycle, ClearingRecord, Dispute, RoamingAgreement

# Newest business date first; the id orders the cycles of one date (one per agreement).
CYCLE_KEYS = (Key("business_date", descending=True, kind="date"), Key("id", descending=True, kind="int"))
DISPUTE_KEYS = (Key("id", descending=True, kind="int"),)


def _code(value: str | None) -> str | None:
    return value.strip().lower() if value and value.strip() else None


def resolve_roaming_agreements(
    info: Any, *, network: str | None = None, service: Any = None
) -> list[RoamingAgreement]:
    service_value = enum_value(service) if service else None
    return list(selectors.agreements_list(network_code=_code(network), service=service_value))


def resolve_clearing_cycles(info: Any, *, filter: Any = None, **page: Any):
    filter = filter or {}
    date_from: dt.date | None = filter.get("business_date_from")
    date_to: dt.date | None = filter.get("business_date_to")
    if date_from is not None and date_to is not None and date_from > date_to:
        raise ApiError(
            f"businessDateFrom {date_from.isoformat()} is after businessDateTo {date_to.isoformat()}",
            ApiErrorCode.INVALID_ARGUMENT,
            argument="filter.businessDateFrom",
        )
    service = filter.get("service")
    qs = selectors.cycles_query(
        network_code=_code(filter.get("network")),
        service=enum_value(service) if service else None,
        states=[str(enum_value(s)) for s in filter.get("states") or ()],
        business_date_from=date_from,
        business_date_to=date_to,
    )
    return keyset_page(qs, connection_type=ClearingCycleConnection, keys=CYCLE_KEYS, **page)


def resolve_clearing_cycle(
    info: Any, *, network: str, service: Any, business_date: dt.date
) -> ClearingCycle | None:
    return selectors.cycle_find(
        network_code=_code(network) or "", service=str(enum_value(service)), business_date=business_date
    )


def resolve_disputes(info: Any, *, filter: Any = None, **page: Any):
    filter = filter or {}
    service = filter.get("service")
    qs = selectors.disputes_query(
        states=[str(enum_value(s)) for s in filter.get("states") or ()],
        network_code=_code(filter.get("network")),
        service=enum_value(service) if service else None,
        party=_code(filter.get("party")),
    )
    return keyset_page(qs, connection_type=DisputeConnection, keys=DISPUTE_KEYS, **page)


def resolve_clearing_record(info: Any, *, record_id: str) -> ClearingRecord | None:
    return selectors.record_find(record_id=(record_id or "").strip())


def dispute_pk(value: str) -> int | None:
    """The primary key in a ``Dispute`` id (``global_id("Dispute", pk)``), or None if it is not one."""
    try:
        type_name, pk = from_global_id((value or "").strip())
    except Exception:  # not base64 / not "<type>:<id>"
        return None
    return int(pk) if type_name == "Dispute" and pk.isdigit() else None


def resolve_dispute(info: Any, *, id: str) -> Dispute | None:
    pk = dispute_pk(id)
    return selectors.dispute_find(dispute_id=pk) if pk is not None else None
