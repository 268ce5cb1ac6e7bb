"""`citycard roaming simulate --network yrd --date 2026-11-21 --taps 200` — a simulated day of roaming.

Through real terminals and uploads (``interop.roaming_day``): a simulator terminal per member city, test
cards of each member city ridden on the others' buses, batches signed and ingested as over HTTP, verified
and handed to the acquirers' outboxes. Prints what the day holds per city pair (taps, yuan). A day already
simulated is refused (nothing done) unless ``--again``, which adds more rides."""

from __future__ import annotations

import datetime as dt

from django.utils.translation import gettext
from rich.console import Console
from rich.table import Table

from citycard.interop.roaming_day import roaming_day_simulate
from citycard.platform.errors import DomainError
from citycard.platform.management.base import PlatformCommand


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise DomainError(
            gettext("--date %(value)r is not a date: give YYYY-MM-DD") % {"value": value},
            code="invalid",
            field="date",
        ) from None


def _yuan(fen: int) -> str:
    return f"¥{fen / 100:,.2f}"


class Command(PlatformCommand):
    help = "Simulate a day of roaming in a network (模拟漫游日) through real terminals and uploads."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        sim = sub.add_parser(
            "simulate",
            help="member cities' test cards ridden on each other's buses, uploaded and verified; totals per pair",
        )
        sim.add_argument("--network", required=True, help="the network's code (yrd, gba)")
        sim.add_argument("--date", required=True, metavar="YYYY-MM-DD", help="the business date (Beijing)")
        sim.add_argument("--taps", type=int, default=100, help="rides in the whole network (default 100)")
        sim.add_argument("--cards", type=int, default=20, help="test cards per member city (default 20)")
        sim.add_argument("--seed", type=int, help="the same seed rides the same cards at the same times")
        sim.add_argument("--again", action="store_true", help="add rides to a day simulated already")

    def handle(self, *args, **opts):
        console = Console(file=self.stdout, width=120)
        day = roaming_day_simulate(
            network_code=opts["network"].strip().lower(),
            business_date=_date(opts["date"]),
            taps=opts["taps"],
            cards_per_city=opts["cards"],
            seed=opts["seed"],
            again=opts["again"],
            actor=self.actor,
        )
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(day.outcomes.items()))
        console.print(
            gettext(
                "%(network)s %(business_date)s: %(taps)s rides presented (%(outcomes)s) on "
                "%(terminals)s; %(batches)s batches uploaded"
            )
            % {
                "network": day.network,
                "business_date": day.business_date,
                "taps": day.taps,
                "outcomes": outcomes,
                "terminals": ", ".join(day.terminals),
                "batches": day.batches,
            }
        )
        if day.again:
            console.print(
                gettext("added to the %(earlier_taps)s taps earlier runs stored for that day")
                % {"earlier_taps": day.earlier_taps}
            )
        table = Table(
            title=gettext("%(network)s %(business_date)s: stored taps per city pair (all runs of the day)")
            % {"network": day.network, "business_date": day.business_date}
        )
        for col in (
            gettext("acquirer (host)"),
            gettext("issuer (card)"),
            gettext("taps"),
            gettext("roaming"),
            gettext("amount (yuan)"),
        ):
            table.add_column(col)
        for pair in day.pairs:
            table.add_row(
                pair.acquirer, pair.issuer, str(pair.taps), str(pair.roaming), _yuan(pair.amount_fen)
            )
        table.add_row(
            "all pairs",
            "",
            str(sum(p.taps for p in day.pairs)),
            str(sum(p.roaming for p in day.pairs)),
            _yuan(sum(p.amount_fen for p in day.pairs)),
        )
        console.print(table)
        console.print(
            gettext(
                "clear it: citycard clearing run --network %(network)s --service transit --date "
                "%(business_date)s (after the cut-off); running this again for that date is "
                "refused unless --again (adds rides)"
            )
            % {"network": day.network, "business_date": day.business_date}
        )
