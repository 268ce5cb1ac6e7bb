"""`citycard agreement show|set|create --network yrd --service transit` — a roaming agreement's dated versions.

`show` lists every version (the one in force today marked); `set … --effective 2026-12-08` adds a version
(``interop.services.agreements.agreement_version_add``): terms not given are those in force that day.
`create` makes a network's agreement for a service (``interop.services.agreements.agreement_set``) with
version 1 from ``--effective``."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone
from django.utils.translation import gettext
from rich.console import Console
from rich.table import Table

from citycard.interop import selectors
from citycard.interop.models import VisitorPolicy
from citycard.interop.services import agreements
from citycard.platform.errors import DomainError
from citycard.platform.management.base import PlatformCommand


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise DomainError(
            gettext("--effective %(value)r is not a date: give YYYY-MM-DD") % {"value": value},
            code="invalid",
            field="effective_from",
        ) from None


def _time(value: str) -> dt.time:
    try:
        return dt.time.fromisoformat(value)
    except ValueError:
        raise DomainError(
            gettext("--cut-off %(value)r is not a time: give HH:MM (Beijing time)") % {"value": value},
            code="invalid",
            field="cut_off",
        ) from None


def print_versions(console: Console, *, network: str, service: str) -> None:
    agreement = selectors.agreement_get(network_code=network, service=service)
    today = timezone.localdate()
    in_force = agreement.version_on(today)
    console.print(
        gettext(
            "[bold]%(agreement)s[/bold]: %(period)s cycles, operator %(operator)s, "
            "settlement T+%(settlement_lag_days)s, disputes within %(dispute_window_days)s "
            "days"
        )
        % {
            "agreement": agreement.label,
            "period": str(agreement.get_period_display()).lower(),
            "operator": agreement.operator,
            "settlement_lag_days": agreement.settlement_lag_days,
            "dispute_window_days": agreement.dispute_window_days,
        }
    )
    table = Table(
        title=gettext("%(agreement)s versions (Beijing time; ▶ in force today, %(today)s)")
        % {"agreement": agreement.label, "today": today}
    )
    for col in (
        "",
        gettext("version"),
        gettext("effective from"),
        gettext("visitor policy"),
        gettext("issuer fee (bps)"),
        gettext("network fee (bps)"),
        gettext("cut-off"),
        gettext("hotlist grace (min)"),
        gettext("by"),
        gettext("note"),
    ):
        table.add_column(col)
    for version in selectors.agreement_versions(network_code=network, service=service):
        table.add_row(
            "▶" if in_force is not None and version.pk == in_force.pk else "",
            f"v{version.number}",
            version.effective_from.isoformat(),
            version.visitor_policy,
            str(version.issuer_fee_bps),
            str(version.network_fee_bps),
            version.cut_off.strftime("%H:%M"),
            str(version.hotlist_grace_minutes),
            version.created_by,
            version.note,
        )
    console.print(table)


class Command(PlatformCommand):
    help = "Show a roaming agreement's versions (漫游协议), or add a version effective from a business date."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["show", "set", "create"])
        parser.add_argument("--network", required=True, help="the network's code (yrd, gba)")
        parser.add_argument("--service", default="transit", help="transit, medical or merchant")
        parser.add_argument("--effective", help="set: the first business date of the version, YYYY-MM-DD")
        parser.add_argument("--issuer-fee-bps", type=int, help="interchange the issuer keeps, basis points")
        parser.add_argument("--network-fee-bps", type=int, help="the operator's fee, basis points")
        parser.add_argument("--visitor-policy", choices=VisitorPolicy.values)
        parser.add_argument("--cut-off", help="HH:MM, Beijing time")
        parser.add_argument("--hotlist-grace-minutes", type=int)
        parser.add_argument("--note", default="", help="why it changes")
        parser.add_argument("--operator", help="create: the operator as a settlement participant")
        parser.add_argument("--settlement-lag-days", type=int, default=1, help="create: T+n settlement")
        parser.add_argument("--dispute-window-days", type=int, default=30, help="create: days to dispute")

    def handle(self, *args, **opts):
        console = Console(file=self.stdout, width=160)
        network, service = opts["network"].strip().lower(), opts["service"].strip().lower()
        if opts["action"] in ("set", "create") and not opts["effective"]:
            raise DomainError(
                gettext("--effective YYYY-MM-DD is required: the first business date the version prices"),
                field="effective_from",
            )
        if opts["action"] == "create":
            if selectors.agreements_list(network_code=network, service=service).exists():
                raise DomainError(
                    gettext(
                        "%(network)s already has a %(service)s agreement: change its terms with "
                        "`citycard agreement set`"
                    )
                    % {"network": network, "service": service},
                    code="exists",
                )
            agreements.agreement_set(
                network_code=network,
                service=service,
                valid_from=_date(opts["effective"]),
                operator=opts["operator"],
                settlement_lag_days=opts["settlement_lag_days"],
                dispute_window_days=opts["dispute_window_days"],
                issuer_fee_bps=opts["issuer_fee_bps"],
                network_fee_bps=opts["network_fee_bps"],
                visitor_policy=opts["visitor_policy"],
                cut_off=_time(opts["cut_off"]) if opts["cut_off"] else None,
                hotlist_grace_minutes=opts["hotlist_grace_minutes"],
                actor=self.actor,
            )
        if opts["action"] == "set":
            version = agreements.agreement_version_add(
                network_code=network,
                service=service,
                effective_from=_date(opts["effective"]),
                issuer_fee_bps=opts["issuer_fee_bps"],
                network_fee_bps=opts["network_fee_bps"],
                visitor_policy=opts["visitor_policy"],
                cut_off=_time(opts["cut_off"]) if opts["cut_off"] else None,
                hotlist_grace_minutes=opts["hotlist_grace_minutes"],
                note=opts["note"],
                actor=self.actor,
            )
            console.print(
                gettext("%(version)s takes effect on business date %(effective_from)s")
                % {"version": version.label, "effective_from": version.effective_from}
            )
            if version.records_repriced:
                console.print(
                    gettext("%(records_repriced)s record(s) of open cycles priced again")
                    % {"records_repriced": version.records_repriced}
                )
            for city, published in version.fares_republished.items():
                console.print(
                    f"{city}: fare rules v{published} carry the new visitor policy"
                    if published
                    else f"{city}: has published no fare rules yet"
                )
        print_versions(console, network=network, service=service)
