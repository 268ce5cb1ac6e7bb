"""`citycard network list|members|join|leave`."""

from __future__ import annotations

import datetime as dt

from django.utils.translation import gettext
from rich.console import Console
from rich.table import Table

from citycard.platform import selectors, services
from citycard.platform.errors import DomainError
from citycard.platform.management.base import PlatformCommand
from citycard.platform.models import RoamingNetwork


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise DomainError(
            gettext("date %(value)r is not YYYY-MM-DD") % {"value": value}, code="date_invalid"
        ) from None


class Command(PlatformCommand):
    help = "Roaming networks (yrd 长三角, gba 大湾区) and their members."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list", help="list networks")
        members = sub.add_parser("members", help="members of a network, counties included")
        members.add_argument("network")
        join = sub.add_parser("join", help="make a city a member")
        join.add_argument("network")
        join.add_argument("tenant")
        join.add_argument("--since", help="date joined, YYYY-MM-DD (default: today)")
        leave = sub.add_parser("leave", help="end a city's membership")
        leave.add_argument("network")
        leave.add_argument("tenant")
        leave.add_argument("--on", help="date left, YYYY-MM-DD (default: today)")

    def handle(self, *args, **opts):
        getattr(self, f"_{opts['action']}")(opts)

    def _list(self, opts):
        table = Table()
        for col in (gettext("code"), gettext("name"), gettext("members")):
            table.add_column(col)
        for network in RoamingNetwork.objects.all():
            members = selectors.network_members(network_code=network.code)
            table.add_row(
                network.code,
                f"{network.name_zh} {network.name_en}",
                ", ".join(m.tenant.code for m in members),
            )
        Console(file=self.stdout, width=160).print(table)

    def _members(self, opts):
        services.network_get(opts["network"])
        for m in selectors.network_members(network_code=opts["network"]):
            via = f" (through {m.via.code})" if m.via else ""
            self.stdout.write(f"{m.tenant.code}\t{m.tenant.division_code}\t{m.joined_on}{via}")

    def _join(self, opts):
        since = _date(opts["since"]) if opts.get("since") else None
        membership, created = services.network_join(
            network_code=opts["network"], tenant_code=opts["tenant"], joined_on=since, actor=self.actor
        )
        said = (
            gettext("%(tenant)s joined %(network)s since %(joined_on)s")
            if created
            else gettext("%(tenant)s already a member of %(network)s since %(joined_on)s")
        )
        self.stdout.write(
            said
            % {
                "tenant": membership.tenant.code,
                "network": membership.network.code,
                "joined_on": membership.joined_on,
            }
        )

    def _leave(self, opts):
        on = _date(opts["on"]) if opts.get("on") else None
        membership = services.network_leave(
            network_code=opts["network"], tenant_code=opts["tenant"], left_on=on, actor=self.actor
        )
        self.stdout.write(
            gettext("%(tenant)s left %(network)s on %(left_on)s")
            % {
                "tenant": membership.tenant.code,
                "network": membership.network.code,
                "left_on": membership.left_on,
            }
        )
