"""Roaming agreements and their dated versions (docs/clearing.md, "Roaming agreements").

* ``agreement_set`` — establish a network's agreement for a service (its standing terms and version 1), or
  change its standing terms (operator, period, settlement lag, dispute window).
* ``agreement_version_add`` — the one way to change fees, visitor policy, cut-off or hotlist grace: a new
  version effective from a business date, audited; records of open cycles on or after that date are priced
  again, open cycles' windows follow a new cut-off, and a new visitor policy is republished in the member
  cities' fare rules.

Reading them: ``selectors.agreement_get``, ``selectors.agreements_list``, ``selectors.agreement_versions``;
the terms as rules (version in force, business date, cycle window, fee rounding): ``citycard.interop.terms``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext
from django_tenants.utils import tenant_context

from citycard.interop.models import (
    AgreementVersion,
    ClearingCycle,
    CyclePeriod,
    CycleState,
    RoamingAgreement,
    Service,
    VisitorPolicy,
)
from citycard.interop.selectors import agreement_get
from citycard.interop.terms import (
    DEFAULTS,
    FEE_SQL,
    agreement_next_date,
    agreement_opens_at,
    agreement_previous_date,
    agreement_version_in_force,
    cycle_window,
)
from citycard.platform.audit.services import audit_record
from citycard.platform.errors import DomainError, NotFound
from citycard.platform.selectors import network_members
from citycard.platform.services import network_get
from citycard.tenants.fares import services as fares
from citycard.terminal_kit.beijing import BEIJING


def _terms_checked(terms: dict[str, Any]) -> None:
    for name in ("issuer_fee_bps", "network_fee_bps"):
        bps = terms[name]
        if type(bps) is not int or not 0 <= bps <= 10000:
            raise DomainError(
                gettext("%(name)s must be 0..10000 basis points, not %(bps)r") % {"name": name, "bps": bps},
                code="invalid",
                field=name,
            )
    if terms["visitor_policy"] not in VisitorPolicy.values:
        raise DomainError(
            gettext("visitor_policy must be one of %(values)s, not %(terms)r")
            % {"values": ", ".join(VisitorPolicy.values), "terms": terms["visitor_policy"]},
            code="invalid",
            field="visitor_policy",
        )
    grace = terms["hotlist_grace_minutes"]
    if type(grace) is not int or not 0 <= grace <= 24 * 60:
        raise DomainError(
            gettext("hotlist_grace_minutes must be 0..1440, not %(grace)r") % {"grace": grace},
            code="invalid",
            field="hotlist_grace_minutes",
        )
    if not isinstance(terms["cut_off"], dt.time) or terms["cut_off"].tzinfo is not None:
        raise DomainError(
            gettext("cut_off must be a local time (Asia/Shanghai), HH:MM"), code="invalid", field="cut_off"
        )


@transaction.atomic
def agreement_set(
    *,
    network_code: str,
    service: str,
    valid_from: dt.date,
    operator: str | None = None,
    period: str | None = None,
    settlement_lag_days: int = 1,
    dispute_window_days: int = 30,
    issuer_fee_bps: int | None = None,
    network_fee_bps: int | None = None,
    visitor_policy: str | None = None,
    cut_off: dt.time | None = None,
    hotlist_grace_minutes: int | None = None,
    actor: str = "system",
    now: dt.datetime | None = None,
) -> RoamingAgreement:
    """Establish the agreement of ``network_code`` for ``service`` (transit, medical or merchant) with its standing
    terms and, when it has none, version 1 of the dated terms effective ``valid_from``; on an agreement that
    exists, change its standing terms. Dated terms (fees, visitor policy, cut-off, grace) given for an
    existing agreement that differ from those in force on ``valid_from`` become a new version effective
    ``valid_from`` through ``agreement_version_add`` (its checks and audit)."""
    now = now or timezone.now()
    network = network_get(network_code)
    if service not in Service.values:
        raise DomainError(
            gettext("service must be one of %(values)s") % {"values": ", ".join(Service.values)},
            code="invalid",
            field="service",
        )
    period = period or (CyclePeriod.MONTHLY if service == Service.MEDICAL else CyclePeriod.DAILY)
    agreement, created = RoamingAgreement.objects.select_for_update().update_or_create(
        network=network,
        service=service,
        defaults={
            "operator": operator or f"{network_code}-operator",
            "period": period,
            "settlement_lag_days": settlement_lag_days,
            "dispute_window_days": dispute_window_days,
            "valid_from": valid_from,
        },
    )
    given = {
        "visitor_policy": visitor_policy,
        "issuer_fee_bps": issuer_fee_bps,
        "network_fee_bps": network_fee_bps,
        "cut_off": cut_off,
        "hotlist_grace_minutes": hotlist_grace_minutes,
    }
    audit_record(
        action="interop.agreement_set",
        actor=actor,
        object_type="agreement",
        object_id=str(agreement),
        data={"period": period, "operator": agreement.operator, "created": created},
    )
    agreement = RoamingAgreement.objects.select_related("network").get(pk=agreement.pk)
    if agreement.period == CyclePeriod.MONTHLY:
        valid_from = valid_from.replace(day=1)  # monthly cycles: versions take effect with a month
    if not agreement.versions_ordered():
        terms = {name: DEFAULTS[name] if value is None else value for name, value in given.items()}
        agreement_version_add(
            network_code=network_code,
            service=service,
            effective_from=valid_from,
            actor=actor,
            now=now,
            note="the agreement's first terms",
            **terms,
        )
    else:
        in_force = agreement.version_on(valid_from)
        changes = {
            name: value
            for name, value in given.items()
            if value is not None and (in_force is None or getattr(in_force, name) != value)
        }
        if changes:
            agreement_version_add(
                network_code=network_code,
                service=service,
                effective_from=valid_from,
                actor=actor,
                now=now,
                **changes,
            )
    return agreement_get(network_code=network_code, service=service)


def _first_open_date(agreement: RoamingAgreement) -> dt.date | None:
    """The earliest business date a new version may take effect from: after the latest cycle that is cut
    off or further on (its records were validated, netted or settled by the terms then in force)."""
    fixed = (
        ClearingCycle.objects.filter(agreement=agreement)
        .exclude(state=CycleState.OPEN)
        .order_by("-business_date")
        .first()
    )
    return None if fixed is None else agreement_next_date(agreement=agreement, day=fixed.business_date)


@transaction.atomic
def agreement_version_add(
    *,
    network_code: str,
    service: str,
    effective_from: dt.date,
    actor: str,
    now: dt.datetime | None = None,
    note: str = "",
    issuer_fee_bps: int | None = None,
    network_fee_bps: int | None = None,
    visitor_policy: str | None = None,
    cut_off: dt.time | None = None,
    hotlist_grace_minutes: int | None = None,
) -> AgreementVersion:
    """A new version of the agreement's dated terms, in force from business date ``effective_from``:
    terms not given are those of the version in force that day. Refused (nothing written) for a date on or
    before a cycle already cut off, a monthly agreement's date that is not a month's first day, or terms
    out of range; an unchanged version is refused too.

    In the same transaction: the records of open cycles accepted from that date on are priced again by the
    versions now in force on their dates, the windows of open cycles follow a new cut-off, and a changed
    visitor policy is republished in every member city's fare rules (``_members_republish``)."""
    now = now or timezone.now()
    agreement = (
        RoamingAgreement.objects.select_for_update()
        .select_related("network")
        .filter(network__code=network_code, service=service)
        .first()
    )
    if agreement is None:
        network_get(network_code)  # an unknown network is named as such
        raise NotFound(
            gettext("network %(network_code)s has no %(service)s agreement")
            % {"network_code": network_code, "service": service},
            code="no_agreement",
            field="service",
        )
    if not isinstance(effective_from, dt.date) or isinstance(effective_from, dt.datetime):
        raise DomainError(
            gettext("effective_from must be a date, YYYY-MM-DD"), code="invalid", field="effective_from"
        )
    if agreement.period == CyclePeriod.MONTHLY and effective_from.day != 1:
        raise DomainError(
            gettext(
                "%(agreement)s clears monthly: a version takes effect on a month's first day, "
                "not %(effective_from)s (try %(agreement_next_date)s)"
            )
            % {
                "agreement": agreement.label,
                "effective_from": effective_from,
                "agreement_next_date": agreement_next_date(agreement=agreement, day=effective_from),
            },
            code="effective_date",
            field="effective_from",
        )
    earliest = _first_open_date(agreement)
    if earliest is not None and effective_from < earliest:
        raise DomainError(
            gettext(
                "%(agreement)s is cut off up to business date %(agreement_previous_date)s: a "
                "version can take effect from %(earliest)s at the earliest, not "
                "%(effective_from)s"
            )
            % {
                "agreement": agreement.label,
                "agreement_previous_date": agreement_previous_date(agreement=agreement, day=earliest),
                "earliest": earliest,
                "effective_from": effective_from,
            },
            code="effective_date",
            field="effective_from",
        )
    before = agreement.version_on(effective_from)
    given = {
        "visitor_policy": visitor_policy,
        "issuer_fee_bps": issuer_fee_bps,
        "network_fee_bps": network_fee_bps,
        "cut_off": cut_off,
        "hotlist_grace_minutes": hotlist_grace_minutes,
    }
    terms = {
        name: value if value is not None else (getattr(before, name) if before else DEFAULTS[name])
        for name, value in given.items()
    }
    _terms_checked(terms)
    if before is not None and all(getattr(before, name) == value for name, value in terms.items()):
        raise DomainError(
            gettext("%(before)s in force on %(effective_from)s already has these terms: nothing to change")
            % {"before": before.label, "effective_from": effective_from},
            code="unchanged",
        )
    number = max((v.number for v in agreement.versions_ordered()), default=0) + 1
    version = AgreementVersion.objects.create(
        agreement=agreement,
        number=number,
        effective_from=effective_from,
        note=note[:200],
        created_at=now,
        created_by=actor,
        **terms,
    )
    agreement.versions_forget()
    repriced = _records_reprice(agreement, effective_from)
    windows = _open_windows_follow(agreement, effective_from)
    republished: dict[str, int | None] = {}
    policy_changed = before is None or before.visitor_policy != version.visitor_policy
    if agreement.service == Service.TRANSIT and policy_changed:
        republished = _members_republish(agreement, version, actor=actor)
    audit_record(
        action="interop.agreement_version_add",
        actor=actor,
        object_type="agreement",
        object_id=version.label,
        data={
            "effective_from": effective_from.isoformat(),
            **{name: str(value) if name == "cut_off" else value for name, value in terms.items()},
            "note": note[:200],
            "records_repriced": repriced,
            "cycles_rewindowed": windows,
            "fares_republished": republished,
        },
    )
    version.records_repriced = repriced  # type: ignore[attr-defined]
    version.fares_republished = republished  # type: ignore[attr-defined]
    return version


def _records_reprice(agreement: RoamingAgreement, effective_from: dt.date) -> int:
    """The records of the agreement's open cycles accepted on business dates from ``effective_from`` on get
    the fees of the version in force on their date (one UPDATE per version in force since then). Records of
    earlier dates (late records moved into an open cycle) keep theirs."""
    open_cycles = list(
        ClearingCycle.objects.filter(agreement=agreement, state=CycleState.OPEN).values_list("pk", flat=True)
    )
    if not open_cycles:
        return 0
    segments: list[tuple[dt.datetime, dt.datetime | None, AgreementVersion]] = []
    starts = sorted(
        {effective_from}
        | {v.effective_from for v in agreement.versions_ordered() if v.effective_from > effective_from}
    )
    for i, day in enumerate(starts):
        end = agreement_opens_at(agreement=agreement, day=starts[i + 1]) if i + 1 < len(starts) else None
        start = agreement_opens_at(agreement=agreement, day=day)
        segments.append((start, end, agreement_version_in_force(agreement=agreement, day=day)))
    total = 0
    issuer_fee = FEE_SQL.format(amount="amount_fen", bps="%(ibps)s::bigint")
    network_fee = FEE_SQL.format(amount="amount_fen", bps="%(nbps)s::bigint")
    with connection.cursor() as cur:
        for start, end, version in segments:
            cur.execute(
                f"UPDATE interop_clearingrecord SET issuer_fee_fen = {issuer_fee}, network_fee_fen = {network_fee}"
                " WHERE cycle_id = ANY(%(cycles)s) AND kind <> 'adjustment' AND accepted_at >= %(start)s"
                " AND (%(end)s::timestamptz IS NULL OR accepted_at < %(end)s)"
                f" AND (issuer_fee_fen, network_fee_fen) IS DISTINCT FROM ({issuer_fee}, {network_fee})",
                {
                    "ibps": version.issuer_fee_bps,
                    "nbps": version.network_fee_bps,
                    "cycles": open_cycles,
                    "start": start,
                    "end": end,
                },
            )
            total += cur.rowcount
    return total


def _open_windows_follow(agreement: RoamingAgreement, effective_from: dt.date) -> int:
    """Open cycles from the date before ``effective_from`` on take the windows the versions now give (a new
    cut-off moves the end of the day before and the start of the day itself)."""
    changed = 0
    for cycle in ClearingCycle.objects.filter(
        agreement=agreement,
        state=CycleState.OPEN,
        business_date__gte=agreement_previous_date(agreement=agreement, day=effective_from),
    ):
        opens_at, cut_off_at = cycle_window(agreement=agreement, day=cycle.business_date)
        if (cycle.opens_at, cycle.cut_off_at) != (opens_at, cut_off_at):
            cycle.opens_at, cycle.cut_off_at = opens_at, cut_off_at
            cycle.save(update_fields=["opens_at", "cut_off_at"])
            changed += 1
    return changed


def _members_republish(
    agreement: RoamingAgreement, version: AgreementVersion, *, actor: str
) -> dict[str, int | None]:
    """Each member city that has published fare rules publishes them again with the new visitor policy,
    effective from the version's first business date: ``tenants.fares.services.fares_agreements_republish``
    run in the city's schema (its published document again, agreements applied — never its draft rows).
    {city: the fare document version in force then, or None when it has published none}."""
    effective = dt.datetime.combine(version.effective_from, version.cut_off, tzinfo=BEIJING)
    done: dict[str, int | None] = {}
    cities = [
        m.tenant for m in network_members(network_code=agreement.network.code, on=version.effective_from)
    ]
    for city in cities:
        if city.kind == "county" or city.code in done:
            continue
        try:
            with tenant_context(city):
                publication = fares.fares_agreements_republish(
                    tenant=city, actor=actor, on=version.effective_from, effective_from=effective
                )
        finally:
            connection.set_schema_to_public()
        done[city.code] = publication.version if publication is not None else None
    return done
