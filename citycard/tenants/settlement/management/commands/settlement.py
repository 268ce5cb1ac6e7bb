"""`citycard settlement --tenant CODE book [--cycle LABEL] | list | differences [--open] [--cycle LABEL] |
resolve ID --note ..` — the settled clearing cycles on a tenant's ledger (清算资金结算入账): book the cycles
whose reconciliation manifest is in the inbox and not booked yet (what the delivery does by itself; a rerun
books nothing twice), list the cycles booked, the differences between a file and the ledger (差错) and close
one with a note. Thin over citycard.tenants.settlement.services and selectors; amounts in yuan."""

from __future__ import annotations

from django.utils.translation import gettext
from django_tenants.utils import tenant_context
from rich.console import Console
from rich.table import Table

from citycard.platform.errors import NotFound
from citycard.platform.management.base import PlatformCommand, beijing, labelled
from citycard.platform.selectors import tenant_by_code
from citycard.tenants.settlement import selectors, services
from citycard.tenants.settlement.models import CycleSettlement, DifferenceReason
from citycard.terminal_kit.money import yuan


class Command(PlatformCommand):
    help = (
        "Settled clearing cycles on the ledger (清算资金结算入账): book them, list them, their differences"
        " (差错) and their resolution."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="tenant code")
        sub = parser.add_subparsers(dest="action", required=True)
        book = sub.add_parser(
            "book", help="book the settled cycles whose reconciliation file is in the inbox (idempotent)"
        )
        book.add_argument("--cycle", help="only this cycle, e.g. yrd-merchant-2026-12-06")
        sub.add_parser("list", help="the cycles booked, newest first")
        diff = sub.add_parser("differences", help="the differences between the files and the ledger")
        diff.add_argument("--open", action="store_true", help="only those not resolved")
        diff.add_argument("--cycle", help="only this cycle's")
        res = sub.add_parser("resolve", help="close a difference with a note saying what was done")
        res.add_argument("id", type=int)
        res.add_argument("--note", required=True)

    def handle(self, *args, **opts):
        tenant = tenant_by_code(opts["tenant"])
        if tenant is None or tenant.is_platform:
            raise NotFound(gettext("no tenant with code %(code)r") % {"code": opts["tenant"]}, field="tenant")
        console = Console(file=self.stdout, width=160)
        with tenant_context(tenant):
            getattr(self, "_" + opts["action"])(console, opts)

    def _table(self, console, settlements: list[CycleSettlement]) -> None:
        table = Table(
            gettext("cycle"),
            gettext("participant"),
            gettext("net position (yuan)"),
            gettext("settled (yuan)"),
            gettext("fees (yuan)"),
            gettext("records"),
            gettext("differences"),
            gettext("booked (Beijing)"),
        )
        for s in settlements:
            table.add_row(
                s.cycle,
                s.participant,
                yuan(s.file_net_fen),
                yuan(s.settled_fen),
                yuan(s.fees_fen),
                str(s.records),
                str(s.differences),
                beijing(s.booked_at),
            )
        console.print(table)

    def _book(self, console, opts):
        booked = services.cycle_settlements_book(actor=self.actor, cycle=opts["cycle"])
        console.print(gettext("%(count)s settled cycle(s) on the ledger") % {"count": len(booked)})
        if booked:
            self._table(console, booked)

    def _list(self, console, opts):
        self._table(console, selectors.cycle_settlements())

    def _differences(self, console, opts):
        table = Table(
            gettext("id"),
            gettext("cycle"),
            gettext("record"),
            gettext("role"),
            gettext("counterparty"),
            gettext("file (yuan)"),
            gettext("ledger (yuan)"),
            gettext("reason"),
            gettext("resolved"),
        )
        for d in selectors.settlement_differences(open_only=opts["open"], cycle=opts["cycle"]):
            table.add_row(
                str(d.pk),
                d.settlement.cycle,
                d.record_id,
                d.role,
                d.counterparty,
                yuan(d.file_fen),
                yuan(d.ledger_fen),
                labelled(DifferenceReason, d.reason),
                f"{beijing(d.resolved_at)} {d.note}".strip(),
            )
        console.print(table)

    def _resolve(self, console, opts):
        difference = services.settlement_difference_resolve(
            difference_id=opts["id"], note=opts["note"], actor=self.actor
        )
        console.print(
            gettext("difference %(id)s of %(record)s resolved: %(note)s")
            % {"id": difference.pk, "record": difference.record_id, "note": difference.note}
        )
