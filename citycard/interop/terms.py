"""An agreement's terms as rules (docs/clearing.md, "Roaming agreements" and "Cycles"): pure functions of a
``RoamingAgreement`` and its versions (read once per instance, ``versions_ordered``), no writes.

* ``agreement_version_in_force`` — the version that prices and clears a business date (协议版本).
* ``agreement_business_date`` — the business date a moment belongs to (the cut-off of that date's version);
  ``agreement_business_dates`` the same for many moments of one agreement.
* ``agreement_next_date``, ``cycle_window`` — the next business date; when a business date opens and cuts off.
* ``agreement_policy_label`` — the version that set the visitor policy in force on a date.
* ``fee_fen``, ``FEE_SQL`` — basis points of an amount, rounded half up per record (in Python and in SQL).

Setting the terms is a service: ``citycard.interop.services.agreements``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from django.utils.translation import gettext

from citycard.interop.models import AgreementVersion, CyclePeriod, RoamingAgreement, VisitorPolicy
from citycard.platform.errors import DomainError
from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.money import bps_of

DEFAULTS: dict[str, Any] = {
    "visitor_policy": VisitorPolicy.LOCAL_DISCOUNTS.value,
    "issuer_fee_bps": 0,
    "network_fee_bps": 0,
    "cut_off": dt.time(4, 0),
    "hotlist_grace_minutes": 60,
}


def fee_fen(amount_fen: int, bps: int) -> int:
    """A record's fee at ``bps``: ``terminal_kit.money.bps_of`` (half away from zero), per record."""
    return bps_of(amount_fen, bps)


# The same rounding in SQL, for pricing the records of open cycles again (``_records_reprice``); a property
# test holds it to ``fee_fen`` (tests/interop/test_agreement_versions.py).
FEE_SQL = "sign({amount}) * ((abs({amount}) * {bps} * 2 + 10000) / 20000)"


# --- which version, which business date --------------------------------------------------------------------


def agreement_version_in_force(*, agreement: RoamingAgreement, day: dt.date) -> AgreementVersion:
    """The version that prices and clears business date ``day``; refused before the agreement's first."""
    version = agreement.version_on(day)
    if version is None:
        first = agreement.versions_ordered()
        since = f"its first version takes effect {first[0].effective_from}" if first else "it has no version"
        raise DomainError(
            gettext("agreement %(agreement)s has no version in force on %(day)s: %(since)s")
            % {"agreement": agreement.label, "day": day, "since": since},
            code="no_version",
            field="effective_from",
        )
    return version


def _cut_off(agreement: RoamingAgreement, day: dt.date) -> dt.time:
    """The cut-off that opens business date ``day`` (before the first version: the first version's)."""
    version = agreement.version_on(day)
    if version is None:
        versions = agreement.versions_ordered()
        return versions[0].cut_off if versions else DEFAULTS["cut_off"]
    return version.cut_off


def agreement_next_date(*, agreement: RoamingAgreement, day: dt.date) -> dt.date:
    """The business date after ``day``: the next day, or the first of the next month (monthly)."""
    if agreement.period == CyclePeriod.MONTHLY:
        return (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return day + dt.timedelta(days=1)


def agreement_previous_date(*, agreement: RoamingAgreement, day: dt.date) -> dt.date:
    """The business date before ``day``: the day before, or the first of the month before (monthly)."""
    if agreement.period == CyclePeriod.MONTHLY:
        return (day.replace(day=1) - dt.timedelta(days=1)).replace(day=1)
    return day - dt.timedelta(days=1)


def agreement_opens_at(*, agreement: RoamingAgreement, day: dt.date) -> dt.datetime:
    """The moment business date ``day`` opens: its cut-off time on that day, Asia/Shanghai."""
    return dt.datetime.combine(day, _cut_off(agreement, day), tzinfo=BEIJING)


def cycle_window(*, agreement: RoamingAgreement, day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """Business date ``day`` runs from its cut-off to the next date's (each the one its version says)."""
    return (
        agreement_opens_at(agreement=agreement, day=day),
        agreement_opens_at(agreement=agreement, day=agreement_next_date(agreement=agreement, day=day)),
    )


def agreement_business_date(*, agreement: RoamingAgreement, at: dt.datetime) -> dt.date:
    """Daily: business date D runs from D at the cut-off to D+1 at the cut-off (Asia/Shanghai), so a night
    bus at 01:00 belongs to the day before when the cut-off is 04:00. Monthly: the first of the month. The
    cut-off of D is the one of the version in force on D."""
    local = at.astimezone(BEIJING)
    day = local.date()
    if agreement.period == CyclePeriod.MONTHLY:
        day = day.replace(day=1)
    if local >= agreement_opens_at(agreement=agreement, day=day):
        return day
    return agreement_previous_date(agreement=agreement, day=day)


def agreement_business_dates(*, agreement: RoamingAgreement) -> Callable[[dt.datetime], dt.date]:
    """``agreement_business_date`` for many moments of one agreement (a message's records): each local
    day's opening read once, so a record costs a time-zone conversion and a comparison (a day of taps
    spans every minute of it: caching by minute missed for most records)."""
    opens: dict[dt.date, dt.datetime] = {}
    monthly = agreement.period == CyclePeriod.MONTHLY

    def business_date(at: dt.datetime) -> dt.date:
        local = at.astimezone(BEIJING)
        day = local.date()
        if monthly:
            day = day.replace(day=1)
        opening = opens.get(day)
        if opening is None:
            opening = opens[day] = agreement_opens_at(agreement=agreement, day=day)
        if local >= opening:
            return day
        return agreement_previous_date(agreement=agreement, day=day)

    return business_date


def agreement_policy_label(*, agreement: RoamingAgreement, day: dt.date) -> str:
    """``yrd-transit v2``: the version that set the visitor policy in force on ``day`` (a later version that
    changed only fees leaves it named), so a fare document changes only when the policy does."""
    in_force: list[AgreementVersion] = []
    for version in agreement.versions_ordered():
        if version.effective_from > day:
            break
        if in_force and in_force[-1].effective_from == version.effective_from:
            in_force.pop()  # superseded the same day: never in force
        in_force.append(version)
    setter = in_force[-1]
    for earlier in reversed(in_force[:-1]):
        if earlier.visitor_policy != setter.visitor_policy:
            break
        setter = earlier
    return setter.label
