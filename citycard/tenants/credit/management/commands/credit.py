"""`citycard credit --tenant CODE rules-set|rules-show|grant|reopen|list|pay|fares|code-flags|code-charge|
code-waive|bill|repay|autorepay|overdue-run` — credit pay-later (信用付) of a tenant: the city's eligibility
rules, granting lines, reopening a closed one, a payment on credit at a merchant, the citizen-code rides'
fares booked (deferred or charged online), the flagged code rides a clerk charges after review (复核后扣费) or
waives (免收), the month's bills (月度账单), repayment from the online account, automatic repayment through
the bound channels and the overdue run. Thin over citycard.tenants.credit.services and selectors; amounts in
yuan."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone
from django.utils.translation import gettext, pgettext
from django_tenants.utils import tenant_context
from rich.console import Console
from rich.table import Table

from citycard.platform.errors import DomainError, NotFound
from citycard.platform.management.base import PlatformCommand, beijing, labelled
from citycard.platform.reasons import reason_text
from citycard.platform.selectors import tenant_by_code
from citycard.tenants.accounts.management.commands.accounts import fen_of
from citycard.tenants.credit import selectors, services
from citycard.tenants.credit.models import BillState, ItemKind, LineState
from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.money import yuan


def _day(value: str | None) -> dt.date:
    if not value:
        return timezone.now().astimezone(BEIJING).date()
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise DomainError(
            gettext("--on %(value)r is not a date (YYYY-MM-DD)") % {"value": value}, field="on"
        ) from None


class Command(PlatformCommand):
    help = (
        "Credit pay-later (信用付): eligibility rules, grant lines, pay on credit, monthly bills (月度账单),"
        " repay (还款), automatic repayment, overdue run (逾期)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="tenant code")
        sub = parser.add_subparsers(dest="action", required=True)
        rs = sub.add_parser("rules-set", help="set the city's eligibility rules (授信规则)")
        rs.add_argument("--limit", help="credit limit in yuan, e.g. 500.00")
        rs.add_argument("--active-months", type=int, help="the card active for at least N months")
        rs.add_argument("--insured", choices=["yes", "no"], help="require local social insurance (参保)")
        rs.add_argument("--decades", help="age band as birth decades, e.g. 1950-2000")
        rs.add_argument(
            "--schemes", help="qualifying card scheme codes, comma-separated (empty: every scheme)"
        )
        rs.add_argument("--due-day", type=int, help="day of the next month a bill is due (1–28)")
        rs.add_argument(
            "--grace-days", type=int, help="days after the due date before the card is restricted"
        )
        rs.add_argument("--minimum-bps", type=int, help="minimum due in basis points of the bill")
        rs.add_argument("--off", action="store_true", help="switch credit pay-later off")
        sub.add_parser("rules-show", help="print the rules")
        gr = sub.add_parser("grant", help="grant lines to every eligible cardholder (授信), or to one card")
        gr.add_argument("--card")
        ro = sub.add_parser("reopen", help="reopen a closed credit line, the eligibility rules checked again")
        ro.add_argument("card")
        ls = sub.add_parser("list", help="credit lines with what they owe")
        ls.add_argument("--state", choices=["active", "suspended", "closed"])
        pay = sub.add_parser("pay", help="pay a merchant on credit")
        pay.add_argument("--merchant", required=True)
        pay.add_argument("--card", required=True)
        pay.add_argument("--amount", required=True, help="in yuan")
        pay.add_argument("--payment-id", required=True)
        fares = sub.add_parser(
            "fares",
            help="book the citizen-code rides' fares: deferred onto credit lines or charged to online accounts",
        )
        fares.add_argument(
            "--since",
            help="YYYY-MM-DD (Beijing): every ride tapped since that day, not the rides since the last run",
        )
        cf = sub.add_parser("code-flags", help="citizen-code rides flagged by the verification stage (复核)")
        cf.add_argument("--open", action="store_true", help="only those not decided yet")
        cc = sub.add_parser(
            "code-charge", help="charge a flagged citizen-code ride after review (复核后扣费), once"
        )
        cc.add_argument("flag", type=int, help="the review flag's id (code-flags lists them)")
        cc.add_argument("--note", default="", help="what the clerk found")
        cw = sub.add_parser("code-waive", help="waive a flagged citizen-code ride (免收): never charged")
        cw.add_argument("flag", type=int, help="the review flag's id (code-flags lists them)")
        cw.add_argument("--note", default="", help="why")
        bill = sub.add_parser(
            "bill", help="generate a Beijing month's bills (once per line), or show a card's"
        )
        bill.add_argument("--month", required=True, help="YYYY-MM, a month that is over")
        bill.add_argument("--card", help="print this card's bill of the month instead")
        rep = sub.add_parser("repay", help="repay from the cardholder's online account")
        rep.add_argument("card")
        rep.add_argument("--amount", required=True, help="in yuan")
        rep.add_argument("--key", required=True, help="idempotency key of the repayment")
        auto = sub.add_parser("autorepay", help="collect due bills through the bound channels (自动还款)")
        auto.add_argument("--on", help="YYYY-MM-DD (default: today, Beijing)")
        od = sub.add_parser("overdue-run", help="suspend lines and restrict cards of overdue bills")
        od.add_argument("--on", help="YYYY-MM-DD (default: today, Beijing)")

    def handle(self, *args, **opts):
        tenant = tenant_by_code(opts["tenant"])
        if tenant is None or tenant.is_platform:
            raise NotFound(gettext("no tenant with code %(code)r") % {"code": opts["tenant"]}, field="tenant")
        console = Console(file=self.stdout, width=160)
        with tenant_context(tenant):
            getattr(self, "_" + opts["action"].replace("-", "_"))(console, opts)

    def _rules_set(self, console, opts):
        fields = {}
        if opts["limit"]:
            fields["limit_fen"] = fen_of(opts["limit"])
        for name in ("active_months", "due_day", "grace_days", "minimum_bps"):
            if opts[name] is not None:
                fields[name] = opts[name]
        if opts["insured"]:
            fields["require_insured"] = opts["insured"] == "yes"
        if opts["decades"]:
            low, _, high = opts["decades"].partition("-")
            fields["birth_decade_min"], fields["birth_decade_max"] = int(low), int(high or low)
        if opts["schemes"] is not None:
            fields["schemes"] = [s.strip() for s in opts["schemes"].split(",") if s.strip()]
        fields["enabled"] = not opts["off"]
        services.credit_rules_set(actor=self.actor, **fields)
        self._rules_show(console, opts)

    def _rules_show(self, console, opts):
        r = selectors.rules_get()
        console.print(
            gettext(
                "credit pay-later %(state)s: limit %(limit)s; card active ≥ %(months)s months; insured"
                " %(insured)s; born %(low)ss–%(high)ss; schemes %(schemes)s; due on day %(due_day)s, grace"
                " %(grace)s days, minimum %(minimum)s bps"
            )
            % {
                "state": pgettext("switch", "on") if r.enabled else pgettext("switch", "off"),
                "limit": yuan(r.limit_fen),
                "months": r.active_months,
                "insured": gettext("required") if r.require_insured else gettext("not required"),
                "low": r.birth_decade_min,
                "high": r.birth_decade_max,
                "schemes": ",".join(r.schemes) or gettext("all"),
                "due_day": r.due_day,
                "grace": r.grace_days,
                "minimum": r.minimum_bps,
            }
        )

    def _grant(self, console, opts):
        lines = services.credit_grant(card_no=opts["card"], actor=self.actor)
        console.print(gettext("%(count)s credit line(s) granted") % {"count": len(lines)})

    def _reopen(self, console, opts):
        line = services.credit_line_reopen(card_no=opts["card"], actor=self.actor)
        console.print(
            gettext("credit line of %(card)s reopened, limit %(limit)s")
            % {"card": line.card_no, "limit": yuan(line.limit_fen)}
        )

    def _fares(self, console, opts):
        since = None
        if opts.get("since"):
            try:
                day = dt.date.fromisoformat(opts["since"])
            except ValueError:
                raise DomainError(
                    gettext("--since %(value)r is not a date (YYYY-MM-DD)") % {"value": opts["since"]},
                    field="since",
                ) from None
            since = dt.datetime.combine(day, dt.time(), tzinfo=BEIJING)
        counts = services.online_fares_book(actor=self.actor, since=since)
        console.print(
            gettext(
                "citizen-code fares: %(deferred)s deferred onto credit, %(charged)s charged to online"
                " accounts, %(unpaid)s unpaid, %(held)s held by a citizen-code flag, %(waiting)s waiting"
                " for verification"
            )
            % counts
        )

    def _code_flags(self, console, opts):
        table = Table(
            gettext("flag"),
            gettext("time (Beijing)"),
            gettext("code"),
            gettext("card"),
            gettext("amount (yuan)"),
            gettext("decision"),
            gettext("decided by"),
        )
        for flag in selectors.code_flags(open_only=opts["open"]):
            review = getattr(flag, "code_review", None)
            table.add_row(
                str(flag.pk),
                beijing(flag.tapped_at),
                reason_text(flag.code),
                flag.card_no,
                yuan(flag.amount_fen),
                f"{review.get_decision_display()}: {review.get_outcome_display()}" if review else "—",
                review.decided_by if review else "",
            )
        console.print(table)
        console.print(
            gettext(
                "charge after review: %(charge)s (only %(codes)s: the code's signature holds); waive: %(waive)s"
            )
            % {
                "charge": f"`citycard credit --tenant {opts['tenant']} code-charge FLAG`",
                "codes": ", ".join(sorted(services.CHARGEABLE_CODE_FLAGS)),
                "waive": f"`citycard credit --tenant {opts['tenant']} code-waive FLAG --note WHY`",
            }
        )

    def _code_decided(self, console, review):
        values = {
            "tx": review.transaction_id,
            "card": review.card_no,
            "amount": yuan(review.amount_fen),
            "decision": review.get_decision_display(),
            "outcome": review.get_outcome_display(),
            "by": review.decided_by,
        }
        if review.record_id:
            values["outcome"] += f" ({review.record_id})"
        console.print(
            gettext("ride tap:%(tx)s of card %(card)s, %(amount)s: %(decision)s — %(outcome)s, by %(by)s")
            % values
        )

    def _code_charge(self, console, opts):
        review = services.code_ride_charge(flag_id=opts["flag"], actor=self.actor, note=opts["note"])
        self._code_decided(console, review)

    def _code_waive(self, console, opts):
        review = services.code_ride_waive(flag_id=opts["flag"], actor=self.actor, note=opts["note"])
        self._code_decided(console, review)

    def _list(self, console, opts):
        table = Table(
            gettext("card"),
            gettext("state"),
            gettext("limit (yuan)"),
            gettext("owed (yuan)"),
            gettext("available (yuan)"),
            gettext("granted"),
        )
        for line in selectors.lines(state=opts["state"]):
            owed = -line.receivable.balance_fen
            table.add_row(
                line.card_no,
                labelled(LineState, line.state),
                yuan(line.limit_fen),
                yuan(owed),
                yuan(line.limit_fen - owed),
                beijing(line.granted_at),
            )
        console.print(table)

    def _pay(self, console, opts):
        item = services.credit_pay(
            merchant_code=opts["merchant"],
            card_no=opts["card"],
            amount_fen=fen_of(opts["amount"]),
            payment_id=opts["payment_id"],
            actor=self.actor,
        )
        console.print(
            gettext("%(payment)s: %(amount)s at %(payee)s on credit, bill %(month)s")
            % {
                "payment": item.payment_id,
                "amount": yuan(item.amount_fen),
                "payee": item.payee,
                "month": item.month,
            }
        )

    def _bill(self, console, opts):
        if opts["card"]:
            bill = selectors.bill_of(card_no=opts["card"], month=opts["month"])
            if bill is None:
                raise NotFound(
                    gettext("card %(card)s has no bill for %(month)s")
                    % {"card": opts["card"], "month": opts["month"]},
                    field="card",
                )
            console.print(
                gettext(
                    "bill %(month)s of %(card)s: %(due)s due on %(due_on)s (minimum %(minimum)s), paid %(paid)s,"
                    " %(state)s"
                )
                % {
                    "month": bill.month,
                    "card": opts["card"],
                    "due": yuan(bill.full_due_fen),
                    "due_on": bill.due_on,
                    "minimum": yuan(bill.minimum_due_fen),
                    "paid": yuan(bill.paid_fen),
                    "state": labelled(BillState, bill.state),
                }
            )
            table = Table(
                gettext("time (Beijing)"), gettext("kind"), gettext("payee"), gettext("amount (yuan)")
            )
            for item in selectors.bill_items(bill):
                table.add_row(
                    beijing(item.at),
                    labelled(ItemKind, item.kind),
                    item.payee,
                    yuan(item.amount_fen),
                )
            console.print(table)
            return
        self._fares(console, opts)  # the month's citizen-code rides on credit join its bills
        bills = services.credit_bills_generate(month=opts["month"], actor=self.actor)
        console.print(
            gettext("%(count)s bill(s) for %(month)s, %(due)s due")
            % {"count": len(bills), "month": opts["month"], "due": yuan(sum(b.full_due_fen for b in bills))}
        )

    def _repay(self, console, opts):
        repayment = services.credit_repay(
            card_no=opts["card"], amount_fen=fen_of(opts["amount"]), key=opts["key"], actor=self.actor
        )
        console.print(
            gettext("%(key)s: %(amount)s repaid from the online account")
            % {"key": repayment.key, "amount": yuan(repayment.amount_fen)}
        )

    def _autorepay(self, console, opts):
        result = services.credit_autorepay_run(on=_day(opts["on"]), actor=self.actor)
        console.print(
            gettext(
                "%(applied)s collection(s) applied, %(opened)s opened, %(skipped)s bill(s) without a bound"
                " channel, %(failed)s refused by the provider"
            )
            % result
        )

    def _overdue_run(self, console, opts):
        lines = services.credit_overdue_run(on=_day(opts["on"]), actor=self.actor)
        console.print(
            gettext("%(count)s line(s) suspended and card(s) restricted (credit_overdue)")
            % {"count": len(lines)}
        )
