"""`citycard channels --tenant CODE ...` — payment channels (支付渠道): sandbox keys, configure a channel
with its keys, list, a drill against a provider's local sandbox, sweep overdue orders, refund a top-up,
reconcile a provider's statement file (对账) and list and resolve its differences, the 长款 in suspense
(挂账) matched or refunded, the providers' payouts recorded. Thin over
citycard.tenants.payments.services; amounts shown in yuan, kept in fen."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from django.utils.translation import gettext
from django_tenants.utils import tenant_context
from rich.console import Console
from rich.table import Table

from citycard.platform.errors import NotFound
from citycard.platform.management.base import PlatformCommand, beijing
from citycard.platform.selectors import tenant_by_code
from citycard.tenants.accounts.management.commands.accounts import fen_of
from citycard.tenants.payments import drill, selectors, services
from citycard.tenants.payments.models import DifferenceAction, Provider
from citycard.tenants.payments.sandboxes import SandboxKeys
from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.money import yuan


def _today() -> dt.date:
    return dt.datetime.now(BEIJING).date()


class Command(PlatformCommand):
    help = (
        "Payment channels (支付渠道): configure, list, drill against a sandbox, reconcile statements (对账)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="tenant code")
        sub = parser.add_subparsers(dest="sub", required=True)
        keys = sub.add_parser("sandbox-keys", help="write a sandbox key set (both sides) to a directory")
        keys.add_argument("--out", required=True, help="directory")
        conf = sub.add_parser("configure", help="create or change a channel with its keys (sealed at rest)")
        conf.add_argument("code")
        conf.add_argument("--provider", required=True, choices=Provider.values)
        conf.add_argument("--name", default="")
        conf.add_argument("--merchant-id", required=True, help="mchid / PID / merId / the bank's merchant no")
        conf.add_argument("--app-id", default="")
        conf.add_argument("--gateway", required=True, help="the provider's API base URL")
        conf.add_argument("--notify-url", required=True, help="this site's /payments/notify/CODE")
        conf.add_argument("--private-key", required=True, help="PEM file: the merchant's API private key")
        conf.add_argument("--provider-public-key", required=True, help="PEM file: the provider's public key")
        conf.add_argument("--secret-file", help="file: WeChat Pay's APIv3 key (32 characters)")
        conf.add_argument("--query-after", type=int, default=300, help="seconds before an order is queried")
        sub.add_parser("list", help="the channels")
        run = sub.add_parser("drill", help="one top-up end to end against the provider's local sandbox")
        run.add_argument("--provider", required=True, choices=Provider.values)
        run.add_argument("--card", required=True)
        run.add_argument("--amount", required=True, help="in yuan, e.g. 50.00")
        run.add_argument("--key", required=True, help="request key of the top-up")
        run.add_argument("--statement-out", help="write the sandbox's statement of the day here")
        sub.add_parser(
            "sweep",
            help="query the provider for every order left unpaid too long (超时查单), credit or close it",
        )
        ref = sub.add_parser(
            "refund", help="refund (part of) a credited top-up through its channel (充值退款)"
        )
        ref.add_argument("order", help="the order number (out_trade_no)")
        ref.add_argument("--amount", required=True, help="in yuan, e.g. 20.00")
        ref.add_argument("--key", required=True, help="request key of the refund (a retry finds the same)")
        ref.add_argument("--reason", default="")
        pay = sub.add_parser(
            "payout", help="record a provider's payout of a statement day to the bank (结算划款)"
        )
        pay.add_argument("code")
        pay.add_argument("--date", required=True, help="the statement day the payout is for")
        pay.add_argument("--amount", required=True, help="in yuan, as the bank received it")
        pay.add_argument("--reference", required=True, help="the bank's reference of the credit")
        pay.add_argument("--received-on", help="the day the bank received it (default today, Beijing)")
        sub.add_parser("payouts", help="the payouts recorded")
        sus = sub.add_parser("suspense", help="the 长款 held in suspense (挂账)")
        sus.add_argument("--all", action="store_true", help="matched and refunded too")
        match = sub.add_parser("suspense-match", help="match a suspense item to an order or a cardholder")
        match.add_argument("id", type=int)
        target = match.add_mutually_exclusive_group(required=True)
        target.add_argument("--order", help="the order it was meant for")
        target.add_argument("--card", help="the cardholder's card (no order)")
        match.add_argument("--note", required=True)
        back = sub.add_parser(
            "suspense-refund", help="refund a suspense item to the payer through its channel"
        )
        back.add_argument("id", type=int)
        back.add_argument("--note", required=True)
        again = sub.add_parser(
            "suspense-refund-matched",
            help="refund a matched suspense item to the payer through its channel, from the card's account",
        )
        again.add_argument("id", type=int)
        again.add_argument("--note", required=True)
        rec = sub.add_parser("reconcile", help="reconcile a provider's statement file against the ledger")
        rec.add_argument("code")
        rec.add_argument("file")
        rec.add_argument("--date", help="the statement's day (default today, Beijing)")
        exc = sub.add_parser("exceptions", help="the reconciliation differences (对账差错)")
        exc.add_argument("--open", action="store_true", help="only those not resolved")
        exc.add_argument("--channel")
        res = sub.add_parser("resolve", help="resolve a difference with an action and a note")
        res.add_argument("id", type=int)
        res.add_argument("--action", required=True, choices=DifferenceAction.values)
        res.add_argument("--note", required=True)

    def handle(self, *args, **opts):
        tenant = tenant_by_code(opts["tenant"])
        if tenant is None or tenant.is_platform:
            raise NotFound(gettext("no tenant with code %(code)r") % {"code": opts["tenant"]}, field="tenant")
        self.console = Console(file=self.stdout, width=200)
        with tenant_context(tenant):
            getattr(self, "do_" + opts["sub"].replace("-", "_"))(opts)

    def do_sandbox_keys(self, opts):
        out = Path(opts["out"])
        out.mkdir(parents=True, exist_ok=True)
        keys = SandboxKeys.generate()
        files = {
            "merchant_key.pem": keys.merchant_private,
            "merchant_pub.pem": keys.merchant_public,
            "provider_key.pem": keys.provider_private,
            "provider_pub.pem": keys.provider_public,
            "secret.key": keys.secret,
        }
        for name, text in files.items():
            path = out / name
            path.write_text(text, encoding="ascii")
            if "key" in name:
                os.chmod(path, 0o600)
        self.console.print(gettext("wrote %(files)s to %(path)s") % {"files": ", ".join(files), "path": out})

    def do_configure(self, opts):
        secret = (
            Path(opts["secret_file"]).read_text(encoding="ascii").strip() if opts.get("secret_file") else ""
        )
        channel = services.channel_configure(
            code=opts["code"],
            provider=opts["provider"],
            name=opts["name"],
            merchant_id=opts["merchant_id"],
            app_id=opts["app_id"],
            gateway_url=opts["gateway"],
            notify_url=opts["notify_url"],
            private_key_pem=Path(opts["private_key"]).read_text(encoding="ascii"),
            provider_public_key_pem=Path(opts["provider_public_key"]).read_text(encoding="ascii"),
            secret=secret,
            query_after_seconds=opts["query_after"],
            actor=self.actor,
        )
        self.console.print(
            gettext("channel %(channel)s (%(provider)s) configured; keys sealed (serial %(serial)s)")
            % {"channel": channel.code, "provider": channel.provider, "serial": channel.serial_no}
        )

    def do_list(self, opts):
        table = Table(
            gettext("code"),
            gettext("provider"),
            gettext("merchant id"),
            gettext("gateway"),
            gettext("notify URL"),
            gettext("active"),
            gettext("configured"),
        )
        for c in selectors.channels():
            active = gettext("yes") if c.active else gettext("no")
            table.add_row(c.code, c.provider, c.merchant_id, c.gateway_url, c.notify_url, active,
                          beijing(c.configured_at))  # fmt: skip
        self.console.print(table)

    def do_drill(self, opts):
        result = drill.sandbox_drill(
            provider=opts["provider"], card_no=opts["card"], amount_fen=fen_of(opts["amount"]),
            request_key=opts["key"], actor=self.actor,
        )  # fmt: skip
        self.console.print(
            gettext(
                "order %(order)s on %(channel)s: %(state)s (%(notifications)s notifications, credited once); "
                "balance %(balance)s"
            )
            % {
                "order": result.order.out_trade_no,
                "channel": result.channel.code,
                "state": result.order.get_state_display(),
                "notifications": result.notifications,
                "balance": yuan(result.balance_fen),
            }
        )
        if opts.get("statement_out"):
            Path(opts["statement_out"]).write_bytes(result.statement)
            self.console.print(
                gettext("statement of %(day)s written to %(path)s")
                % {"day": _today(), "path": opts["statement_out"]}
            )

    def do_sweep(self, opts):
        result = services.topup_orders_sweep(actor=self.actor)
        self.console.print(
            gettext(
                "%(queried)s overdue orders asked for: %(credited)s found paid and credited, %(closed)s closed "
                "unpaid, %(failed)s not answered (asked again next time)"
            )
            % {
                "queried": result.queried,
                "credited": len(result.credited),
                "closed": len(result.closed),
                "failed": len(result.failed),
            }
        )

    def do_refund(self, opts):
        refund = services.topup_order_refund(
            out_trade_no=opts["order"], amount_fen=fen_of(opts["amount"]), request_key=opts["key"],
            reason=opts["reason"], actor=self.actor,
        )  # fmt: skip
        self.console.print(
            gettext("refund %(refund)s of order %(order)s: %(amount)s back through %(channel)s (%(state)s)")
            % {
                "refund": refund.out_refund_no,
                "order": refund.order.out_trade_no,
                "amount": yuan(refund.amount_fen),
                "channel": refund.order.channel.code,
                "state": refund.get_state_display(),
            }
        )

    def do_payout(self, opts):
        payout = services.payout_record(
            channel_code=opts["code"], statement_date=dt.date.fromisoformat(opts["date"]),
            amount_fen=fen_of(opts["amount"]), bank_reference=opts["reference"], actor=self.actor,
            received_on=dt.date.fromisoformat(opts["received_on"]) if opts.get("received_on") else None,
        )  # fmt: skip
        self.console.print(
            gettext(
                "payout %(reference)s of %(channel)s %(day)s: %(amount)s to the bank, the statement nets %(expected)s"
            )
            % {
                "reference": payout.bank_reference,
                "channel": payout.channel.code,
                "day": payout.statement_date,
                "amount": yuan(payout.amount_fen),
                "expected": yuan(payout.expected_fen),
            }
        )
        if payout.difference_id:
            self.console.print(
                gettext("the payout differs from the statement: difference %(difference)s for a clerk")
                % {"difference": payout.difference_id}
            )

    def do_payouts(self, opts):
        table = Table(
            gettext("channel"),
            gettext("statement date"),
            gettext("bank reference"),
            gettext("amount ¥"),
            gettext("expected ¥"),
            gettext("received on"),
        )
        for p in selectors.payouts():
            table.add_row(
                p.channel.code, str(p.statement_date), p.bank_reference, yuan(p.amount_fen), yuan(p.expected_fen),
                str(p.received_on),
            )  # fmt: skip
        self.console.print(table)

    def do_suspense(self, opts):
        table = Table(
            "id",
            gettext("channel"),
            gettext("statement date"),
            gettext("order no"),
            gettext("amount ¥"),
            gettext("state"),
            gettext("resolved"),
        )
        for item in selectors.suspense_items(open_only=not opts["all"]):
            table.add_row(
                str(item.pk), item.channel.code, str(item.difference.run.statement_date), item.out_trade_no,
                yuan(item.amount_fen), item.get_state_display(),
                gettext("%(note)s by %(user)s") % {"note": item.note, "user": item.resolved_by}
                if item.resolved_at
                else "",
            )  # fmt: skip
        self.console.print(table)

    def do_suspense_match(self, opts):
        item = services.suspense_match(
            item_id=opts["id"], out_trade_no=opts.get("order") or "", card_no=opts.get("card") or "",
            note=opts["note"], actor=self.actor,
        )  # fmt: skip
        self.console.print(
            gettext("suspense item %(item)s (%(amount)s) matched to card %(card)s")
            % {"item": item.pk, "amount": yuan(item.amount_fen), "card": item.card_no}
        )

    def do_suspense_refund(self, opts):
        item = services.suspense_refund(item_id=opts["id"], note=opts["note"], actor=self.actor)
        self.console.print(
            gettext("suspense item %(item)s (%(amount)s) refunded to the payer (refund %(refund)s)")
            % {"item": item.pk, "amount": yuan(item.amount_fen), "refund": item.refund_no}
        )

    def do_suspense_refund_matched(self, opts):
        item = services.suspense_matched_refund(item_id=opts["id"], note=opts["note"], actor=self.actor)
        self.console.print(
            gettext(
                "suspense item %(item)s (%(amount)s) taken back from card %(card)s and refunded to the payer"
                " (refund %(refund)s)"
            )
            % {
                "item": item.pk,
                "amount": yuan(item.amount_fen),
                "card": item.card_no,
                "refund": item.refund_no,
            }
        )

    def do_reconcile(self, opts):
        day = dt.date.fromisoformat(opts["date"]) if opts.get("date") else _today()
        path = Path(opts["file"])
        run = services.statement_reconcile(
            channel_code=opts["code"], day=day, data=path.read_bytes(), actor=self.actor, file_name=path.name
        )
        self.console.print(
            gettext(
                "statement %(channel)s %(day)s: %(lines)s lines, paid %(paid)s, refunded %(refunded)s, "
                "fees %(fees)s; %(matched)s matched, %(differences)s differences"
            )
            % {
                "channel": run.channel.code,
                "day": run.statement_date,
                "lines": run.lines,
                "paid": yuan(run.paid_fen),
                "refunded": yuan(run.refunded_fen),
                "fees": yuan(run.fee_fen),
                "matched": run.matched,
                "differences": run.exceptions,
            }
        )

    def do_exceptions(self, opts):
        table = Table(
            "id",
            gettext("channel"),
            gettext("date"),
            gettext("kind"),
            gettext("order no"),
            gettext("statement ¥"),
            gettext("ledger ¥"),
            gettext("reason"),
            gettext("resolved"),
        )
        for d in selectors.differences(open_only=opts["open"], channel_code=opts.get("channel")):
            table.add_row(
                str(d.pk), d.run.channel.code, str(d.run.statement_date), d.kind, d.out_trade_no or d.out_refund_no,
                "" if d.statement_fen is None else yuan(d.statement_fen),
                "" if d.ledger_fen is None else yuan(d.ledger_fen),
                d.reason_display,
                gettext("%(action)s by %(user)s") % {"action": d.action, "user": d.resolved_by}
                if d.resolved_at
                else "",
            )  # fmt: skip
        self.console.print(table)

    def do_resolve(self, opts):
        d = services.difference_resolve(
            difference_id=opts["id"], action=opts["action"], note=opts["note"], actor=self.actor
        )
        self.console.print(
            gettext("difference %(difference)s (%(kind)s) resolved: %(action)s")
            % {"difference": d.pk, "kind": d.kind, "action": d.action}
            + (gettext(", posting %(posting)s") % {"posting": d.posting_id} if d.posting_id else "")
        )
