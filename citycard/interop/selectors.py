"""Reading interop: agreements, cycles and their results (summary, matrix, positions, instructions, files,
records, disputes), the network hotlist. Changing them: ``citycard.interop.services`` (one module per topic)."""

from __future__ import annotations

import datetime as dt
import json
import zlib
from collections.abc import Iterable
from typing import Any

from django.db import connection
from django.db.models import Count, F, Q, QuerySet, Sum, Window
from django.db.models.functions import Coalesce, Greatest, RowNumber
from django.utils import timezone
from django.utils.translation import gettext

from citycard.interop.models import (
    VALIDATED_CYCLE_STATES,
    AgreementVersion,
    BilateralPosition,
    ClearingCycle,
    ClearingRecord,
    CyclePeriod,
    CycleState,
    Dispute,
    NetPosition,
    NetworkHotlist,
    NetworkHotlistEntry,
    ReconciliationFile,
    RecordStatus,
    RoamingAgreement,
    Service,
    SettlementInstruction,
    VisitorPolicy,
)
from citycard.interop.terms import agreement_policy_label
from citycard.platform.audit.selectors import audit_entries_for
from citycard.platform.errors import NotFound
from citycard.platform.models import RoamingNetwork, Tenant
from citycard.platform.selectors import card_list_versioned, tenant_networks
from citycard.platform.services import network_get
from citycard.terminal_kit.beijing import BEIJING

# The agreement's visitor policy as the fare rule document says it (docs/fares.md, "Who rides").
FARE_POLICY = {
    VisitorPolicy.LOCAL_FARE: "no_concession",
    VisitorPolicy.LOCAL_DISCOUNTS: "host_rules",
    VisitorPolicy.HOME_CATEGORIES: "home_category",
}


def agreed_visitor_policies(*, tenant: Tenant, on: dt.date | None = None) -> dict[str, tuple[str, str]]:
    """{network: (fare-document policy, agreement version)} for the transit agreements in force on ``on``
    (default today, Asia/Shanghai) of the networks the tenant (its city, for a county) is a member of: the
    policy of the version in force that day, named by the version that set it (``yrd-transit v2``).
    Registered with the fare rules (tenants.fares.selectors) by InteropConfig.ready."""
    on = on or timezone.localdate()
    agreements = (
        RoamingAgreement.objects.filter(
            service=Service.TRANSIT, valid_from__lte=on, network__in=tenant_networks(tenant=tenant, on=on)
        )
        .select_related("network")
        .prefetch_related("versions")
    )
    agreed = {}
    for agreement in agreements:
        version = agreement.version_on(on)
        if version is not None:
            policy = FARE_POLICY[VisitorPolicy(version.visitor_policy)]
            agreed[agreement.network.code] = (policy, agreement_policy_label(agreement=agreement, day=on))
    return agreed


def visitor_policy_changes(*, tenant: Tenant, after: dt.datetime) -> list[tuple[dt.date, dt.datetime]]:
    """(business date, the moment it opens) of each transit agreement version of the tenant's networks that
    takes effect after ``after`` and changes the visitor policy. Registered with the fare rules by
    InteropConfig.ready, so a city publishing today keeps a policy change its network has scheduled."""
    day = after.astimezone(BEIJING).date()
    agreements = (
        RoamingAgreement.objects.filter(service=Service.TRANSIT, network__in=tenant_networks(tenant=tenant))
        .select_related("network")
        .prefetch_related("versions")
    )
    changes = []
    for agreement in agreements:
        for version in agreement.versions_ordered():
            if version.effective_from <= day or agreement.version_on(version.effective_from) != version:
                continue  # in force already, or superseded the same day
            before = agreement.version_on(version.effective_from - dt.timedelta(days=1))
            if before is None or before.visitor_policy != version.visitor_policy:
                opens = dt.datetime.combine(version.effective_from, version.cut_off, tzinfo=BEIJING)
                changes.append((version.effective_from, opens))
    return sorted(changes)


def agreement_versions(
    *, network_code: str | None = None, service: str | None = None
) -> QuerySet[AgreementVersion]:
    """Agreement versions with their agreement and network, by network, service, effective date, number."""
    qs = AgreementVersion.objects.select_related("agreement__network")
    if network_code:
        qs = qs.filter(agreement__network__code=network_code)
    if service:
        qs = qs.filter(agreement__service=service)
    return qs.order_by("agreement__network__code", "agreement__service", "effective_from", "number")


def cycle_summary(*, cycle: ClearingCycle) -> dict[str, Any]:
    """Everything a cycle produced, in a stable form (two runs of a cycle compare equal)."""
    statuses = {
        row["current_status"]: {"records": row["n"], "amount_fen": row["s"] or 0}
        for row in ClearingRecord.objects.filter(cycle=cycle)
        .with_status()
        .values("current_status")
        .annotate(n=Count("id"), s=Sum("amount_fen"))
    }
    rejected = dict(
        ClearingRecord.objects.filter(cycle=cycle, status="rejected")
        .values("reason")
        .annotate(n=Count("id"))
        .values_list("reason", "n")
    )
    return {
        "cycle": cycle.label,
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


# --- for the platform's GraphQL and consoles: keyword-only, batched over cycles ------------------------------


def agreement_get(*, network_code: str, service: str) -> RoamingAgreement:
    """The agreement of a network for a service, with its network; NotFound names an unknown network or a
    network without that agreement."""
    agreement = (
        RoamingAgreement.objects.select_related("network")
        .filter(network__code=network_code, service=service)
        .first()
    )
    if agreement is None:
        network_get(network_code)  # an unknown network is named as such
        raise NotFound(
            gettext("network %(network_code)s has no %(service)s agreement")
            % {"network_code": network_code, "service": service},
            code="no_agreement",
        )
    return agreement


def agreements_list(
    *, network_code: str | None = None, service: str | None = None
) -> QuerySet[RoamingAgreement]:
    """Roaming agreements (one per network and service), with their network and versions, by network code and
    service."""
    qs = RoamingAgreement.objects.select_related("network").prefetch_related("versions")
    if network_code:
        qs = qs.filter(network__code=network_code)
    if service:
        qs = qs.filter(service=service)
    return qs.order_by("network__code", "service")


def cycles_query(
    *,
    network_code: str | None = None,
    service: str | None = None,
    states: Iterable[str] = (),
    business_date_from: dt.date | None = None,
    business_date_to: dt.date | None = None,
) -> QuerySet[ClearingCycle]:
    """Clearing cycles with their agreement and network, filtered (dates inclusive); unordered."""
    qs = ClearingCycle.objects.select_related("agreement__network")
    if network_code:
        qs = qs.filter(agreement__network__code=network_code)
    if service:
        qs = qs.filter(agreement__service=service)
    states = list(states)
    if states:
        qs = qs.filter(state__in=states)
    if business_date_from:
        qs = qs.filter(business_date__gte=business_date_from)
    if business_date_to:
        qs = qs.filter(business_date__lte=business_date_to)
    return qs


def cycle_find(*, network_code: str, service: str, business_date: dt.date) -> ClearingCycle | None:
    """The cycle of an agreement on a business date (a monthly cycle: the month's), if there is one. Unlike
    ``services.cycles.cycle_get_or_create`` this never creates it."""
    agreement = agreements_list(network_code=network_code, service=service).first()
    if agreement is None:
        return None
    if agreement.period == CyclePeriod.MONTHLY:
        business_date = business_date.replace(day=1)
    return (
        cycles_query(network_code=network_code, service=service).filter(business_date=business_date).first()
    )


def cycles_due(*, now: dt.datetime | None = None) -> QuerySet[ClearingCycle]:
    """Open cycles whose cut-off has passed, the earliest first (for the beat task)."""
    now = now or timezone.now()
    return (
        ClearingCycle.objects.filter(state=CycleState.OPEN, cut_off_at__lte=now)
        .select_related("agreement__network")
        .order_by("cut_off_at")
    )


_CYCLE_PAIRS_SQL = """
WITH RECURSIVE pair AS (
    (SELECT issuer, acquirer FROM interop_clearingrecord WHERE cycle_id = %(cycle)s
     ORDER BY issuer, acquirer LIMIT 1)
    UNION ALL
    SELECT next.issuer, next.acquirer FROM pair, LATERAL (
        SELECT issuer, acquirer FROM interop_clearingrecord
        WHERE cycle_id = %(cycle)s AND (issuer, acquirer) > (pair.issuer, pair.acquirer)
        ORDER BY issuer, acquirer LIMIT 1) AS next
)
SELECT issuer, acquirer FROM pair
"""


def cycle_pairs(*, cycle_id: int) -> list[tuple[str, str]]:
    """The (issuer, acquirer) pairs with records in the cycle, in that order (an index walk)."""
    with connection.cursor() as cur:
        cur.execute(_CYCLE_PAIRS_SQL, {"cycle": cycle_id})
        return cur.fetchall()


_CYCLE_ISSUERS_PENDING_SQL = """
WITH RECURSIVE issuers(issuer) AS (
    (SELECT issuer FROM interop_clearingrecord WHERE cycle_id = %(cycle)s ORDER BY issuer LIMIT 1)
    UNION ALL
    SELECT (SELECT r.issuer FROM interop_clearingrecord r WHERE r.cycle_id = %(cycle)s AND r.issuer > issuers.issuer
            ORDER BY r.issuer LIMIT 1)
    FROM issuers WHERE issuers.issuer IS NOT NULL
)
SELECT issuer FROM issuers WHERE issuer IS NOT NULL AND EXISTS (
    SELECT 1 FROM interop_clearingrecord r WHERE r.cycle_id = %(cycle)s AND r.issuer = issuers.issuer
    AND r.status = 'pending')
ORDER BY issuer
"""


def cycle_issuers_pending(*, cycle: ClearingCycle) -> list[str]:
    """The issuers with records awaiting validation in the cycle, in code order: one query, a loose walk
    of the index over the issuers (a step each, not one per issuer × acquirer pair: 300, not 90,000, in a
    national network), then one probe each for a pending record."""
    with connection.cursor() as cur:
        cur.execute(_CYCLE_ISSUERS_PENDING_SQL, {"cycle": cycle.pk})
        return [row[0] for row in cur.fetchall()]


def cycle_record_totals(*, cycle_ids: Iterable[int]) -> dict[int, dict[str, tuple[int, int]]]:
    """Per cycle: records and amount (fen) by status as read (pending, valid, rejected). One aggregate query."""
    totals: dict[int, dict[str, tuple[int, int]]] = {pk: {} for pk in cycle_ids}
    rows = (
        ClearingRecord.objects.filter(cycle_id__in=list(totals))
        .with_status()
        .values("cycle_id", "current_status")
        .annotate(n=Count("id"), s=Sum("amount_fen"))
        .order_by()
    )
    for row in rows:
        totals[row["cycle_id"]][row["current_status"]] = (row["n"], row["s"] or 0)
    return totals


NETTED_STATES = ("netted", "settled", "disputed")
_TOTALS_SQL = """
SELECT cycle_id, 'valid', sum(records), sum(amount_fen) FROM interop_bilateralposition
WHERE cycle_id = ANY(%(netted)s) GROUP BY cycle_id
UNION ALL
SELECT cycle_id, 'rejected', count(*), sum(amount_fen) FROM interop_clearingrecord
WHERE cycle_id = ANY(%(netted)s) AND status = 'rejected' GROUP BY cycle_id
UNION ALL
SELECT r.cycle_id,
    CASE WHEN r.status = 'pending' AND c.state = ANY(%(validated)s) THEN 'valid' ELSE r.status END,
    count(*), sum(r.amount_fen)
FROM interop_clearingrecord r JOIN interop_clearingcycle c ON c.id = r.cycle_id
WHERE r.cycle_id = ANY(%(others)s) GROUP BY 1, 2
"""


def cycle_record_totals_of(*, cycles: Iterable[ClearingCycle]) -> dict[int, dict[str, tuple[int, int]]]:
    """``cycle_record_totals`` of cycles whose state is known, in one query that reads a netted cycle's
    figures from what netting wrote rather than from its records: its valid records are exactly its
    bilateral positions (netting sums every record not rejected, and no record joins a cycle once it is
    closed), its rejected ones come from the partial index of rejections. A million-record settled cycle
    then costs a few hundred rows; a cycle not netted yet is counted record by record as before."""
    cycles = list(cycles)
    totals: dict[int, dict[str, tuple[int, int]]] = {c.pk: {} for c in cycles}
    netted = [c.pk for c in cycles if c.state in NETTED_STATES]
    others = [c.pk for c in cycles if c.state not in NETTED_STATES]
    with connection.cursor() as cur:
        cur.execute(
            _TOTALS_SQL, {"netted": netted, "others": others, "validated": list(VALIDATED_CYCLE_STATES)}
        )
        for cycle_id, status, n, amount in cur.fetchall():
            totals[cycle_id][status] = (int(n), int(amount or 0))
    return totals


def records_query(
    *,
    cycle_ids: Iterable[int],
    issuer: str | None = None,
    acquirer: str | None = None,
    status: str | None = None,
    reason: str | None = None,
) -> QuerySet[ClearingRecord]:
    """The records of cycles, filtered by issuer, acquirer, status as read (``record_status``) and reason;
    unordered. A cell of the bilateral matrix is (issuer, acquirer, valid); the exceptions are the rejected
    ones (a rejection is stored as such, so that status needs no join to the cycle)."""
    qs = ClearingRecord.objects.filter(cycle_id__in=list(cycle_ids))
    if status == RecordStatus.REJECTED:
        qs = qs.filter(status=RecordStatus.REJECTED)
    else:
        qs = qs.with_status()  # annotated ``current_status``: every record's status reads without its cycle
        if status:
            qs = qs.filter(current_status=status)
    for field, value in (("issuer", issuer), ("acquirer", acquirer), ("reason", reason)):
        if value:
            qs = qs.filter(**{field: value})
    return qs.defer("data")


_NETTED_COUNT_SQL = """
SELECT CASE WHEN %(valid)s THEN (
    SELECT coalesce(sum(records), 0) FROM interop_bilateralposition WHERE cycle_id = %(cycle)s
    AND (%(issuer)s::text IS NULL OR issuer = %(issuer)s) AND (%(acquirer)s::text IS NULL OR acquirer = %(acquirer)s)
) ELSE 0 END + CASE WHEN %(rejected)s THEN (
    SELECT count(*) FROM interop_clearingrecord WHERE cycle_id = %(cycle)s AND status = 'rejected'
    AND (%(issuer)s::text IS NULL OR issuer = %(issuer)s) AND (%(acquirer)s::text IS NULL OR acquirer = %(acquirer)s)
) ELSE 0 END
"""


def records_count(
    *,
    cycle: ClearingCycle,
    query: QuerySet[ClearingRecord],
    issuer: str | None = None,
    acquirer: str | None = None,
    status: str | None = None,
    reason: str | None = None,
) -> int:
    """How many records ``query`` (``records_query`` of ``cycle`` with these filters) holds, in one query.
    A netted cycle's count by issuer, acquirer and status is read from its bilateral positions (the valid
    ones) and the partial index of rejections, not by counting up to a million rows; any other filter
    counts the query."""
    if cycle.state not in NETTED_STATES or reason or status not in (None, "", "valid", "rejected"):
        return query.count()
    params = {
        "cycle": cycle.pk,
        "issuer": issuer,
        "acquirer": acquirer,
        "valid": status in (None, "", "valid"),
        "rejected": status in (None, "", "rejected"),
    }
    with connection.cursor() as cur:
        cur.execute(_NETTED_COUNT_SQL, params)
        return int(cur.fetchone()[0])


def records_page(*, query: QuerySet[ClearingRecord], after: str | None, size: int) -> list[ClearingRecord]:
    """Up to ``size`` records of ``query`` in record id order after the record id ``after`` (keyset
    paging: each page reads from where the one before stopped, never counting what it skips)."""
    if after:
        query = query.filter(record_id__gt=after)
    return list(query.order_by("record_id")[:size])


def reconciliation_file_download(*, cycle_id: int, participant: str) -> tuple[str, str] | None:
    """(SHA-256, text) of a participant's reconciliation file of a cycle, the text as stored (its digest is
    the file's, checked by whoever downloads it). One query."""
    row = (
        ReconciliationFile.objects.filter(cycle_id=cycle_id, participant=participant)
        .values_list("sha256", "csv_zlib")
        .first()
    )
    return None if row is None else (row[0], zlib.decompress(bytes(row[1])).decode())


def exception_groups_of(
    *,
    cycle_ids: Iterable[int],
    issuer: str | None = None,
    acquirer: str | None = None,
    reason: str | None = None,
) -> QuerySet[ClearingRecord]:
    """Exception groups (异常汇总) of cycles: per cycle, issuer, acquirer and reason, the rejected records'
    count (``records``) and amount (``amount_fen``), as dicts; of one issuer, acquirer or reason if given.
    An aggregate over the partial index of rejections (``record_rejected_idx``); not ordered."""
    qs = ClearingRecord.objects.filter(cycle_id__in=list(cycle_ids), status=RecordStatus.REJECTED)
    if issuer:
        qs = qs.filter(issuer=issuer)
    if acquirer:
        qs = qs.filter(acquirer=acquirer)
    if reason:
        qs = qs.filter(reason=reason)
    return qs.values("cycle_id", "issuer", "acquirer", "reason").annotate(
        records=Count("id"), amount_fen=Sum("amount_fen")
    )


def exception_summary_capped(
    *,
    cycle_ids: Iterable[int],
    cap: int,
    issuer: str | None = None,
    acquirer: str | None = None,
    reason: str | None = None,
) -> dict[int, list[dict[str, Any]] | None]:
    """Each cycle's exception groups (``exception_groups_of``) by issuer, acquirer and reason, or None for a
    cycle with more than ``cap`` of them: one query that hands back at most ``cap + 1`` groups a cycle (a
    300-participant cycle of 1M records has ~18,000)."""
    ids = list(cycle_ids)
    rows = (
        exception_groups_of(cycle_ids=ids, issuer=issuer, acquirer=acquirer, reason=reason)
        .annotate(
            _rank=Window(
                RowNumber(),
                partition_by=[F("cycle_id")],
                order_by=[F("issuer").asc(), F("acquirer").asc(), F("reason").asc()],
            )
        )
        .filter(_rank__lte=cap + 1)
        .order_by("cycle_id", "_rank")
    )
    found: dict[int, list[dict[str, Any]]] = {cycle_id: [] for cycle_id in ids}
    for row in rows:
        row.pop("_rank")
        found[row["cycle_id"]].append(row)
    return {cycle_id: None if len(groups) > cap else groups for cycle_id, groups in found.items()}


# --- exceptions at national scale: one aggregate query per view, whatever the number of groups ------------------

# A cycle's exceptions in one statement: the totals per reason, the ``top`` issuers of each reason (by amount)
# and, only when the rejections involve at most ``detail_max`` participants, every reason × issuer × acquirer
# group (a 300-participant cycle has ~18,000 of them: they are then read per issuer or per reason, paged).
_EXCEPTION_OVERVIEW_SQL = """
WITH groups AS MATERIALIZED (
    SELECT reason, issuer COLLATE "C" AS issuer, acquirer COLLATE "C" AS acquirer,
           count(*) AS n, sum(amount_fen) AS fen
    FROM interop_clearingrecord WHERE cycle_id = %(cycle)s AND status = 'rejected'
    GROUP BY 1, 2, 3
), participants AS (
    SELECT count(*) AS n FROM (SELECT issuer FROM groups UNION SELECT acquirer FROM groups) AS codes
), issuers AS (
    SELECT reason, issuer, sum(n) AS n, sum(fen) AS fen, count(*) AS acquirers,
           row_number() OVER (PARTITION BY reason ORDER BY sum(fen) DESC, issuer) AS rank
    FROM groups GROUP BY reason, issuer
), reasons AS (
    SELECT reason, sum(n) AS n, sum(fen) AS fen, count(*) AS issuers, sum(acquirers) AS groups
    FROM issuers GROUP BY reason
)
SELECT (SELECT n FROM participants),
       (SELECT coalesce(jsonb_agg(jsonb_build_array(reason, n, fen, issuers, groups) ORDER BY reason), '[]')::text
        FROM reasons),
       (SELECT coalesce(jsonb_agg(jsonb_build_array(reason, issuer, n, fen, acquirers) ORDER BY reason, rank),
                        '[]')::text
        FROM issuers WHERE rank <= %(top)s),
       CASE WHEN (SELECT n FROM participants) <= %(detail_max)s THEN
           (SELECT coalesce(jsonb_agg(jsonb_build_array(reason, issuer, acquirer, n, fen)
                                      ORDER BY reason, issuer, acquirer), '[]')::text FROM groups)
       END
"""


def exception_overview(*, cycle_id: int, top: int, detail_max: int) -> dict[str, Any]:
    """A cycle's exceptions (异常) for the console, one query whatever their number: ``participants`` (codes
    among the rejected records' issuers and acquirers), ``reasons`` (each ``{reason, records, amount_fen,
    issuers, groups}``, by reason), ``top_issuers`` ({reason: [{issuer, records, amount_fen, acquirers}, …]},
    the ``top`` largest by amount, then issuer) and ``groups``: every reason × issuer × acquirer group
    (``{reason, issuer, acquirer, records, amount_fen}``) when there are at most ``detail_max`` participants,
    else None (read them per issuer or per reason: ``exception_groups_page``, ``exception_issuers_page``)."""
    with connection.cursor() as cur:
        cur.execute(_EXCEPTION_OVERVIEW_SQL, {"cycle": cycle_id, "top": top, "detail_max": detail_max})
        participants, reasons, top_issuers, groups = cur.fetchone()
    by_reason: dict[str, list[dict[str, Any]]] = {}
    for reason, issuer, n, fen, acquirers in json.loads(top_issuers):
        by_reason.setdefault(reason, []).append(
            {"issuer": issuer, "records": int(n), "amount_fen": int(fen), "acquirers": int(acquirers)}
        )
    return {
        "participants": int(participants),
        "reasons": [
            {"reason": r, "records": int(n), "amount_fen": int(fen), "issuers": int(i), "groups": int(g)}
            for r, n, fen, i, g in json.loads(reasons)
        ],
        "top_issuers": by_reason,
        "groups": None
        if groups is None
        else [
            {"reason": r, "issuer": i, "acquirer": a, "records": int(n), "amount_fen": int(fen)}
            for r, i, a, n, fen in json.loads(groups)
        ],
    }


_EXCEPTION_ISSUERS_SQL = """
SELECT issuer, count(*) AS n, sum(amount_fen) AS fen, count(DISTINCT acquirer) AS acquirers,
       count(*) OVER () AS issuers, sum(count(*)) OVER () AS all_n, sum(sum(amount_fen)) OVER () AS all_fen
FROM interop_clearingrecord WHERE cycle_id = %(cycle)s AND status = 'rejected' AND reason = %(reason)s
GROUP BY issuer ORDER BY fen DESC, issuer COLLATE "C" OFFSET %(offset)s LIMIT %(limit)s
"""


def exception_issuers_page(*, cycle_id: int, reason: str, offset: int, limit: int) -> dict[str, Any]:
    """The issuers of a cycle's exceptions of one reason, largest amount first, ``limit`` from ``offset``:
    ``{rows: [{issuer, records, amount_fen, acquirers}], issuers, records, amount_fen}`` (the counts and sums
    over all of the reason's issuers, not the page's). One query."""
    with connection.cursor() as cur:
        cur.execute(
            _EXCEPTION_ISSUERS_SQL, {"cycle": cycle_id, "reason": reason, "offset": offset, "limit": limit}
        )
        found = cur.fetchall()
    first = found[0] if found else (None, 0, 0, 0, 0, 0, 0)
    return {
        "rows": [
            {"issuer": issuer, "records": n, "amount_fen": int(fen), "acquirers": acquirers}
            for issuer, n, fen, acquirers, *_totals in found
        ],
        "issuers": first[4],
        "records": int(first[5]),
        "amount_fen": int(first[6]),
    }


_EXCEPTION_GROUPS_SQL = """
SELECT reason, acquirer, count(*) AS n, sum(amount_fen) AS fen,
       count(*) OVER () AS groups, sum(count(*)) OVER () AS all_n, sum(sum(amount_fen)) OVER () AS all_fen
FROM interop_clearingrecord
WHERE cycle_id = %(cycle)s AND status = 'rejected' AND issuer = %(issuer)s
  AND (%(reason)s::text IS NULL OR reason = %(reason)s)
GROUP BY reason, acquirer ORDER BY reason, fen DESC, acquirer COLLATE "C" OFFSET %(offset)s LIMIT %(limit)s
"""


def exception_groups_page(
    *, cycle_id: int, issuer: str, reason: str | None, offset: int, limit: int
) -> dict[str, Any]:
    """One issuer's exceptions in a cycle per reason × acquirer (of one reason, or all), by reason then
    largest amount, ``limit`` from ``offset``: ``{rows: [{reason, issuer, acquirer, records, amount_fen}],
    groups, records, amount_fen}`` (over all the issuer's groups, not the page's). One query."""
    with connection.cursor() as cur:
        cur.execute(
            _EXCEPTION_GROUPS_SQL,
            {"cycle": cycle_id, "issuer": issuer, "reason": reason, "offset": offset, "limit": limit},
        )
        found = cur.fetchall()
    first = found[0] if found else (None, None, 0, 0, 0, 0, 0)
    return {
        "rows": [
            {"reason": r, "issuer": issuer, "acquirer": acquirer, "records": n, "amount_fen": int(fen)}
            for r, acquirer, n, fen, *_totals in found
        ],
        "groups": first[4],
        "records": int(first[5]),
        "amount_fen": int(first[6]),
    }


def exceptions_by_reason(*, cycle_id: int) -> list[tuple[str, int, int]]:
    """A cycle's exceptions per reason: (reason, records, amount in fen), by reason. One aggregate over the
    partial index of rejections, a row per reason (the per issuer × acquirer groups of ``exception_groups_of``
    are ~18,000 in a 300-participant cycle)."""
    return [
        (row["reason"], row["records"], row["amount_fen"])
        for row in ClearingRecord.objects.filter(cycle_id=cycle_id, status=RecordStatus.REJECTED)
        .values("reason")
        .annotate(records=Count("id"), amount_fen=Sum("amount_fen"))
        .order_by("reason")
    ]


def bilateral_of(
    *, cycle_ids: Iterable[int], issuer: str | None = None, acquirer: str | None = None
) -> QuerySet[BilateralPosition]:
    """The bilateral matrices' cells of cycles, by cycle, issuer, acquirer; of one issuer or acquirer if
    given."""
    qs = BilateralPosition.objects.filter(cycle_id__in=list(cycle_ids))
    if issuer:
        qs = qs.filter(issuer=issuer)
    if acquirer:
        qs = qs.filter(acquirer=acquirer)
    return qs.order_by("cycle_id", "issuer", "acquirer")


def bilateral_capped(
    *, cycle_ids: Iterable[int], cap: int, issuer: str | None = None, acquirer: str | None = None
) -> dict[int, list[BilateralPosition] | None]:
    """Each cycle's cells (``bilateral_of``), or None for a cycle with more than ``cap`` of them: one query
    that reads at most ``cap + 1`` cells a cycle (a national network's matrix has ~90,000)."""
    ids = list(cycle_ids)
    rows = (
        bilateral_of(cycle_ids=ids, issuer=issuer, acquirer=acquirer)
        .annotate(
            _rank=Window(RowNumber(), partition_by=[F("cycle_id")], order_by=[F("issuer"), F("acquirer")])
        )
        .filter(_rank__lte=cap + 1)
    )
    found: dict[int, list[BilateralPosition] | None] = {cycle_id: [] for cycle_id in ids}
    for row in rows:
        found[row.cycle_id].append(row)
    return {cycle_id: None if len(cells) > cap else cells for cycle_id, cells in found.items()}


# The matrix for the console: axes with their totals and the cells as heat map points. The points (one per
# non-empty cell: 89,700 at 300 participants) are aggregated into JSON text by PostgreSQL and handed to the
# page as they are, never turned into Python objects; in no order (the page places each by its indices:
# sorting them was a third of the query), codes compared bytewise ("C"). Settlement stores the result
# (``MatrixPicture``, ``netting.matrix_picture_store``); a cycle netted but not settled is aggregated live.
MATRIX_LIVE_SQL = """
WITH cells AS MATERIALIZED (
    SELECT issuer COLLATE "C" AS issuer, acquirer COLLATE "C" AS acquirer, records, amount_fen
    FROM interop_bilateralposition WHERE cycle_id = %(cycle)s
), xs AS (
    SELECT acquirer, sum(records) AS n, sum(amount_fen) AS fen, row_number() OVER (ORDER BY acquirer) - 1 AS x
    FROM cells GROUP BY acquirer
), ys AS (
    SELECT issuer, sum(records) AS n, sum(amount_fen) AS fen, row_number() OVER (ORDER BY issuer) - 1 AS y
    FROM cells GROUP BY issuer
)
SELECT (SELECT coalesce(jsonb_agg(jsonb_build_array(acquirer, n, fen) ORDER BY x), '[]')::text FROM xs),
       (SELECT coalesce(jsonb_agg(jsonb_build_array(issuer, n, fen) ORDER BY y), '[]')::text FROM ys),
       (SELECT coalesce(json_agg(json_build_array(xs.x, ys.y, c.amount_fen, c.records)), '[]')::text
        FROM cells c JOIN xs USING (acquirer) JOIN ys USING (issuer)),
       (SELECT coalesce(jsonb_agg(jsonb_build_object('issuer', issuer, 'acquirer', acquirer,
                                                     'records', records, 'amount_fen', amount_fen)
                                  ORDER BY amount_fen DESC, issuer, acquirer), '[]')::text
        FROM (SELECT * FROM cells ORDER BY amount_fen DESC, issuer, acquirer LIMIT %(largest)s) AS top)
"""
# The stored picture, or (only when there is none) the live aggregate: one query either way.
_MATRIX_SQL = f"""
SELECT acquirers::text, issuers::text, points_json, largest::text FROM interop_matrixpicture
WHERE cycle_id = %(cycle)s
UNION ALL
SELECT * FROM ({MATRIX_LIVE_SQL}) AS live
WHERE NOT EXISTS (SELECT 1 FROM interop_matrixpicture WHERE cycle_id = %(cycle)s)
"""


MATRIX_LARGEST = 10


def bilateral_matrix_points(*, cycle_id: int) -> dict[str, Any]:
    """A cycle's bilateral matrix for drawing, one query whatever its size: ``acquirers`` and ``issuers``
    (sorted, each ``(code, records, amount_fen)``: the column and row totals), ``points_json``, the JSON
    text of ``[[acquirer index, issuer index, amount_fen, records], …]``, one per non-empty cell, in no
    particular order, and ``largest``, its ``MATRIX_LARGEST`` largest cells by gross amount (then issuer,
    acquirer: the largest flows), each ``{issuer, acquirer, records, amount_fen}``. Read from the picture
    stored at settlement, else aggregated from the matrix. Empty lists before netting."""
    with connection.cursor() as cur:
        cur.execute(_MATRIX_SQL, {"cycle": cycle_id, "largest": MATRIX_LARGEST})
        acquirers, issuers, points, largest = cur.fetchone()
    return {
        "acquirers": [(code, int(n), int(fen)) for code, n, fen in json.loads(acquirers)],
        "issuers": [(code, int(n), int(fen)) for code, n, fen in json.loads(issuers)],
        "points_json": points,
        "largest": json.loads(largest),
    }


def net_positions_of(*, cycle_ids: Iterable[int]) -> QuerySet[NetPosition]:
    return NetPosition.objects.filter(cycle_id__in=list(cycle_ids)).order_by("cycle_id", "participant")


def instructions_of(*, cycle_ids: Iterable[int]) -> QuerySet[SettlementInstruction]:
    return SettlementInstruction.objects.filter(cycle_id__in=list(cycle_ids)).order_by("cycle_id", "id")


def reconciliation_files_of(*, cycle_ids: Iterable[int]) -> QuerySet[ReconciliationFile]:
    """The files' state and totals, without their CSV text (ask ``reconciliation_file_text`` for one)."""
    return (
        ReconciliationFile.objects.filter(cycle_id__in=list(cycle_ids))
        .defer("csv_zlib")
        .order_by("cycle_id", "participant")
    )


def reconciliation_file_text(*, participant: str, sha256: str) -> str | None:
    """The stored text of ``participant``'s reconciliation file with this SHA-256, if there is one: how a
    recipient fetches the file its signed manifest names (registered with the tenants' exchange by
    ``InteropConfig.ready``; the recipient checks the digest itself)."""
    packed = (
        ReconciliationFile.objects.filter(participant=participant, sha256=sha256)
        .values_list("csv_zlib", flat=True)
        .first()
    )
    return None if packed is None else zlib.decompress(bytes(packed)).decode()


def disputes_query(
    *,
    cycle_ids: Iterable[int] | None = None,
    states: Iterable[str] = (),
    network_code: str | None = None,
    service: str | None = None,
    party: str | None = None,
) -> QuerySet[Dispute]:
    """Disputes with their record (and its cycle, agreement and network) and adjustment; unordered."""
    qs = Dispute.objects.select_related("record__cycle__agreement__network", "adjustment").defer(
        "record__data", "adjustment__data"
    )
    if cycle_ids is not None:
        qs = qs.filter(record__cycle_id__in=list(cycle_ids))
    states = list(states)
    if states:
        qs = qs.filter(state__in=states)
    if network_code:
        qs = qs.filter(record__cycle__agreement__network__code=network_code)
    if service:
        qs = qs.filter(record__cycle__agreement__service=service)
    if party:
        qs = qs.filter(Q(record__issuer=party) | Q(record__acquirer=party))
    return qs


def dispute_find(*, dispute_id: int) -> Dispute | None:
    return disputes_query().filter(pk=dispute_id).first()


def record_find(*, record_id: str) -> ClearingRecord | None:
    """One clearing record by its id (``<schema>-<transaction id>``, ``adj-…`` for an adjustment), with
    its ``current_status``."""
    return ClearingRecord.objects.filter(record_id=record_id).with_status().first()


# --- for the clearing console (citycard/interop/console): what a clerk's day needs, a query each -----------

CYCLE_STEPS = ("open", "closed", "validated", "netted", "settled")
STEP_ACTIONS = {
    "interop.cycle_close": "closed",
    "interop.cycle_validate": "validated",
    "interop.cycle_net": "netted",
    "interop.cycle_settle": "settled",
    "interop.cycle_resume": "resumed",
}


def cycles_around(*, on: dt.date) -> list[ClearingCycle]:
    """Every agreement's cycle of business date ``on`` (a monthly agreement: its month's) and the one before
    it (the day before, the month before), with agreement and network; one query. Cycles not created yet
    are simply absent."""
    month = on.replace(day=1)
    previous_month = (month - dt.timedelta(days=1)).replace(day=1)
    return list(
        cycles_query()
        .filter(
            Q(agreement__period=CyclePeriod.DAILY, business_date__in=[on, on - dt.timedelta(days=1)])
            | Q(agreement__period=CyclePeriod.MONTHLY, business_date__in=[month, previous_month])
        )
        .order_by("agreement__network__code", "agreement__service", "-business_date")
    )


def cycles_stuck(*, now: dt.datetime, older_than: dt.timedelta) -> list[ClearingCycle]:
    """Cycles that need a person: left closed, validated or netted longer than ``older_than`` since a step
    (or the resume sweep) last moved them, by the clock — the rule of ``services.cycles.cycles_resume_claim``,
    read without claiming — and open cycles more than ``older_than`` past their cut-off. One query."""
    return list(
        cycles_query()
        .annotate(last_moved=Coalesce(Greatest("progressed_at", "resumed_at"), "closed_at"))
        .filter(
            Q(state__in=("closed", "validated", "netted"), last_moved__lt=now - older_than)
            | Q(state="open", cut_off_at__lt=now - older_than)
        )
        .order_by("cut_off_at", "pk")
    )


def cycle_steps(*, cycle: ClearingCycle) -> list[dict[str, Any]]:
    """The steps a cycle went through, from the platform's audit chain: action, who, when (by the clock).
    One query."""
    return [
        {"step": STEP_ACTIONS[e.action], "actor": e.actor, "at": e.at}
        for e in audit_entries_for(object_type="cycle", object_id=cycle.label).filter(action__in=STEP_ACTIONS)
    ]


def open_dispute_counts(*, cycle_ids: Iterable[int]) -> dict[int, int]:
    """Open disputes per cycle (of the disputed record). One query."""
    return dict(
        Dispute.objects.filter(record__cycle_id__in=list(cycle_ids), state="open")
        .values("record__cycle_id")
        .annotate(n=Count("id"))
        .values_list("record__cycle_id", "n")
        .order_by()
    )


def record_with_cycle(*, record_id: str) -> ClearingRecord | None:
    """One clearing record with its cycle, agreement and network (one query)."""
    return (
        ClearingRecord.objects.select_related("cycle__agreement__network").filter(record_id=record_id).first()
    )


# --- the network hotlist -------------------------------------------------------------------------------------


def network_hotlist(*, network_code: str, since: int | None = None) -> dict[str, Any]:
    """The network hotlist: full, or the delta since ``since`` (cards added and removed after it)."""
    network = RoamingNetwork.objects.get(code=network_code)
    head = NetworkHotlist.objects.filter(network=network).first()
    version = head.version if head else 0
    entries = NetworkHotlistEntry.objects.filter(network=network)
    return {"network": network_code, **card_list_versioned(entries=entries, version=version, since=since)}


# --- for the console's charts: one aggregate query each over a range of business dates ----------------------


def _daily_cycles(since: dt.date, until: dt.date, prefix: str = "cycle__") -> Q:
    return Q(
        **{
            f"{prefix}business_date__gte": since,
            f"{prefix}business_date__lte": until,
            f"{prefix}agreement__period": CyclePeriod.DAILY,
        }
    )


def roaming_by_day(*, since: dt.date, until: dt.date) -> list[dict[str, Any]]:
    """Roaming records and gross amount (fen) per business date and network × service, as netted (the
    bilateral positions of the daily cycles netted so far): ``{"day", "network", "records", "amount_fen"}``."""
    rows = (
        BilateralPosition.objects.filter(_daily_cycles(since, until))
        .values("cycle__business_date", "cycle__agreement__network__code", "cycle__agreement__service")
        .annotate(n=Sum("records"), s=Sum("amount_fen"))
        .order_by()
    )
    return [
        {
            "day": row["cycle__business_date"],
            "network": f"{row['cycle__agreement__network__code']} {row['cycle__agreement__service']}",
            "records": row["n"],
            "amount_fen": row["s"],
        }
        for row in rows
    ]


def rejections_by_day(*, since: dt.date, until: dt.date) -> list[dict[str, Any]]:
    """Rejected records (exceptions) per business date and reason of the daily cycles: ``{"day", "reason",
    "records"}`` (read through the partial index of rejected records)."""
    rows = (
        ClearingRecord.objects.filter(_daily_cycles(since, until), status=RecordStatus.REJECTED)
        .values("cycle__business_date", "reason")
        .annotate(n=Count("id"))
        .order_by()
    )
    return [
        {"day": row["cycle__business_date"], "reason": row["reason"], "records": row["n"]} for row in rows
    ]


# Each participant's net position per business date of the daily cycles, for the charts: every participant's
# when there are at most ``all_max`` of them, else the ``top`` that moved most (the sum of their daily
# positions' absolute values) and those asked for by name; with the names of all (the chart's selector).
_NET_POSITIONS_CHART_SQL = """
WITH days AS MATERIALIZED (
    SELECT c.business_date AS day, n.participant COLLATE "C" AS participant, sum(n.net_fen) AS net
    FROM interop_netposition n
    JOIN interop_clearingcycle c ON c.id = n.cycle_id
    JOIN interop_roamingagreement a ON a.id = c.agreement_id
    WHERE c.business_date BETWEEN %(since)s AND %(until)s AND a.period = %(daily)s
    GROUP BY 1, 2
), ranked AS (
    SELECT participant, sum(abs(net)) AS moved,
           row_number() OVER (ORDER BY sum(abs(net)) DESC, participant) AS rank, count(*) OVER () AS everyone
    FROM days GROUP BY participant
)
SELECT (SELECT coalesce(jsonb_agg(jsonb_build_array(participant, rank, moved) ORDER BY participant), '[]')::text
        FROM ranked),
       (SELECT coalesce(jsonb_agg(jsonb_build_array(d.day, d.participant, d.net)), '[]')::text
        FROM days d JOIN ranked r USING (participant)
        WHERE r.everyone <= %(all_max)s OR r.rank <= %(top)s OR d.participant = ANY(%(chosen)s))
"""


def net_positions_chart(
    *, since: dt.date, until: dt.date, top: int, all_max: int, chosen: Iterable[str] = ()
) -> dict[str, Any]:
    """The net positions (净额) per day for the trends chart, one query whatever the number of participants:
    ``participants`` (every participant of the period's daily cycles, by code: ``{participant, rank,
    moved_fen}``, rank 1 the one whose daily positions add up to the most in absolute value) and ``rows``
    (``{day, participant, net_fen}``) for every participant when there are at most ``all_max``, else for the
    ``top`` ranked and those ``chosen``."""
    with connection.cursor() as cur:
        cur.execute(
            _NET_POSITIONS_CHART_SQL,
            {
                "since": since,
                "until": until,
                "daily": CyclePeriod.DAILY,
                "top": top,
                "all_max": all_max,
                "chosen": list(chosen),
            },
        )
        participants, rows = cur.fetchone()
    return {
        "participants": [
            {"participant": p, "rank": int(rank), "moved_fen": int(moved)}
            for p, rank, moved in json.loads(participants)
        ],
        "rows": [
            {"day": dt.date.fromisoformat(day), "participant": p, "net_fen": int(net)}
            for day, p, net in json.loads(rows)
        ],
    }
