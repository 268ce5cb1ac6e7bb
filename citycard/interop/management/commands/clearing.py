"""`citycard clearing close|validate|net|settle|run|collect|status|report --network yrd --service transit
--date 2026-11-21` — the clearing cycle by hand (the same services the Celery tasks run). `status` without
`--date` lists the agreement's latest cycles (transit daily, medical monthly)."""

from __future__ import annotations

import datetime as dt
import json

from django.utils import timezone
from django.utils.translation import gettext
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from citycard.interop import selectors
from citycard.interop.models import CyclePeriod, CycleState, RecordStatus
from citycard.interop.services.cycles import cycle_get_or_create
from citycard.interop.services.messages import outboxes_collect
from citycard.interop.tasks import STEPS  # the steps as the tasks run them (timed for the metrics)
from citycard.platform.errors import DomainError, NotFound
from citycard.platform.management.base import PlatformCommand, beijing, labelled
from citycard.terminal_kit.beijing import BEIJING


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise DomainError(
            gettext("date %(value)r is not YYYY-MM-DD") % {"value": value}, code="date_invalid"
        ) from None


def _moment(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise DomainError(
            gettext("--now %(value)r must be an ISO time with an offset") % {"value": value}, code="invalid"
        )
    return moment


def fen(value: int) -> str:
    return f"{value / 100:,.2f}" if abs(value) < 10**15 else str(value)


# As the console's cycle page (citycard/interop/console/views.py): the whole matrix up to 30 participants.
MATRIX_TABLE_MAX_PARTICIPANTS = 30
TOP_N = 10


def print_cycle(console: Console, cycle) -> None:
    summary = selectors.cycle_summary(cycle=cycle)
    console.print(
        gettext("[bold]%(cycle)s[/bold]: %(state)s")
        % {"cycle": summary["cycle"], "state": labelled(CycleState, summary["state"])}
    )
    records = Table(title=gettext("Records"))
    for col in (gettext("status"), gettext("records"), gettext("amount (yuan)")):
        records.add_column(col)
    for status, row in sorted(summary["records"].items()):
        records.add_row(labelled(RecordStatus, status), str(row["records"]), fen(row["amount_fen"]))
    console.print(records)
    if summary["rejected_by_reason"]:
        console.print(
            "Exceptions: " + ", ".join(f"{k} {v}" for k, v in sorted(summary["rejected_by_reason"].items()))
        )
    cells = summary["matrix"]
    participants = len({c["issuer"] for c in cells} | {c["acquirer"] for c in cells})
    if participants > MATRIX_TABLE_MAX_PARTICIPANTS:
        # A national network's 89,700 cells are no table to read: the largest flows, as on the console.
        cells = sorted(cells, key=lambda c: (-c["amount_fen"], c["issuer"], c["acquirer"]))[:TOP_N]
    if cells:
        title = gettext("Bilateral matrix (issuer owes acquirer)")
        if len(cells) < len(summary["matrix"]):
            title = gettext(
                "The %(shown)s largest of %(cells)s bilateral cells, %(participants)s participants"
                " (issuer owes acquirer; --json for all)"
            ) % {"shown": len(cells), "cells": f"{len(summary['matrix']):,}", "participants": participants}
        matrix = Table(title=title)
        for col in (
            gettext("issuer"),
            gettext("acquirer"),
            gettext("records"),
            gettext("amount (yuan)"),
            gettext("issuer fee (yuan)"),
            gettext("network fee (yuan)"),
            gettext("acquirer due (yuan)"),
        ):
            matrix.add_column(col, justify="right")
        for row in cells:
            matrix.add_row(
                row["issuer"],
                row["acquirer"],
                str(row["records"]),
                fen(row["amount_fen"]),
                fen(row["issuer_fee_fen"]),
                fen(row["network_fee_fen"]),
                fen(row["acquirer_due_fen"]),
            )
        console.print(matrix)
    if summary["positions"]:
        positions = Table(title=gettext("Net positions (Σ = 0)"))
        for col in (
            gettext("participant"),
            gettext("receivable (yuan)"),
            gettext("payable (yuan)"),
            gettext("net (yuan)"),
        ):
            positions.add_column(col, justify="right")
        for row in summary["positions"]:
            positions.add_row(
                row["participant"], fen(row["receivable_fen"]), fen(row["payable_fen"]), fen(row["net_fen"])
            )
        positions.add_row("Σ", "", "", fen(sum(r["net_fen"] for r in summary["positions"])))
        console.print(positions)
    if summary["instructions"]:
        instructions = Table(title=gettext("Settlement instructions"))
        for col in (gettext("payer"), gettext("payee"), gettext("amount (yuan)"), gettext("value date")):
            instructions.add_column(col)
        for row in summary["instructions"]:
            instructions.add_row(row["payer"], row["payee"], fen(row["amount_fen"]), row["value_date"])
        console.print(instructions)


def print_cycles(console: Console, *, network: str, service: str, today: dt.date, limit: int = 12) -> None:
    """The latest cycles of one agreement, newest first: state, cut-off and records by status; today's
    (this month's for a monthly agreement) marked ▶, or said to be missing."""
    cycles = list(
        selectors.cycles_query(network_code=network, service=service).order_by("-business_date")[:limit]
    )
    if not cycles:
        console.print(
            gettext("no %(network)s %(service)s cycles yet") % {"network": network, "service": service}
        )
        return
    monthly = cycles[0].agreement.period == CyclePeriod.MONTHLY
    current = today.replace(day=1) if monthly else today
    totals = selectors.cycle_record_totals(cycle_ids=[c.pk for c in cycles])
    table = Table(
        title=gettext("%(network)s %(service)s cycles, newest first (records · yuan; ▶ today's, %(today)s)")
        % {"network": network, "service": service, "today": today}
    )
    for col in (
        "",
        gettext("business date"),
        gettext("state"),
        gettext("cut-off"),
        gettext("valid"),
        gettext("rejected"),
        gettext("pending"),
    ):
        table.add_column(col)
    for cycle in cycles:
        row = totals[cycle.pk]

        def cell(status: str, row=row) -> str:
            n, amount = row.get(status, (0, 0))
            return f"{n} · {fen(amount)}" if n else ""

        table.add_row(
            "▶" if cycle.business_date == current else "",
            cycle.business_date.isoformat(),
            labelled(CycleState, cycle.state),
            beijing(cycle.cut_off_at),
            cell("valid"),
            cell("rejected"),
            cell("pending"),
        )
    console.print(table)
    if all(cycle.business_date != current for cycle in cycles):
        console.print(gettext("no cycle for today (%(current)s) yet") % {"current": current})
    console.print(gettext("one cycle in full: --date YYYY-MM-DD"))


class Command(PlatformCommand):
    help = (
        "Run and inspect clearing cycles (清算): close, validate, net, settle, run, collect, status, report."
    )

    def add_arguments(self, parser):
        parser.add_argument("action", choices=[*STEPS, "run", "collect", "status", "report"])
        parser.add_argument("--network", default="yrd")
        parser.add_argument("--service", default="transit")
        parser.add_argument(
            "--date", help="business date YYYY-MM-DD (a month's first day for monthly cycles)"
        )
        parser.add_argument("--now", help="the moment to act at (ISO with offset; default: now)")
        parser.add_argument("--participant", help="report: that participant's reconciliation file")
        parser.add_argument("--json", action="store_true", help="status: print the summary as JSON")

    def handle(self, *args, **opts):
        console = Console(file=self.stdout, width=140)
        now = _moment(opts["now"])
        if opts["action"] == "collect":
            done = outboxes_collect(now=now)
            for code, counts in done.items():
                console.print(
                    gettext("%(tenant)s: %(collected)s collected, %(refused)s refused")
                    % {"tenant": code, "collected": counts["collected"], "refused": counts["refused"]}
                )
            console.print(gettext("%(done)s outbox(es) had messages") % {"done": len(done)})
            return
        action = opts["action"]
        reading = action in ("status", "report")  # these never write: no cycle is created to be shown
        if reading:
            selectors.agreement_get(network_code=opts["network"], service=opts["service"])  # names a bad one
        if action == "status" and not opts["date"]:
            today = (now or timezone.now()).astimezone(BEIJING).date()
            print_cycles(console, network=opts["network"], service=opts["service"], today=today)
            return
        if not opts["date"]:
            raise DomainError(gettext("--date is required"), code="invalid", field="date")
        business_date = _date(opts["date"])
        if reading:
            cycle = selectors.cycle_find(
                network_code=opts["network"], service=opts["service"], business_date=business_date
            )
            if cycle is None:
                raise NotFound(
                    gettext(
                        "no %(network)s %(service)s cycle for %(business_date)s yet (citycard clearing run "
                        "--network %(network)s --service %(service)s --date %(business_date)s makes it)"
                    )
                    % {"network": opts["network"], "service": opts["service"], "business_date": business_date}
                )
        else:
            cycle = cycle_get_or_create(
                network_code=opts["network"], service=opts["service"], business_date=business_date
            )
        if action in STEPS or action == "run":
            steps = list(STEPS) if action == "run" else [action]
            if action == "run":
                outboxes_collect(now=now)
            with Progress(console=console, transient=True) as progress:
                task = progress.add_task(f"{cycle.label}", total=len(steps))
                for step in steps:
                    progress.update(task, description=f"{cycle.label}: {step}")
                    cycle = STEPS[step](cycle=cycle, now=now, actor=self.actor)
                    progress.advance(task)
            print_cycle(console, cycle)
        elif action == "status":
            if opts["json"]:
                self.stdout.write(
                    json.dumps(selectors.cycle_summary(cycle=cycle), ensure_ascii=False, indent=1)
                )
            else:
                print_cycle(console, cycle)
        else:
            files = cycle.reconciliations.order_by("participant")
            if opts["participant"]:
                files = files.filter(participant=opts["participant"])
            if not files.exists():
                raise DomainError(
                    gettext("no reconciliation file for %(cycle)s yet (settle it first)")
                    % {"cycle": cycle.label}
                )
            for f in files:
                self.stdout.write(f"== {f.participant} ({f.state}) sha256 {f.sha256}\n{f.csv}")
