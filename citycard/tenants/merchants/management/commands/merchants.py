"""`citycard merchants --tenant CODE onboard|list|suspend|resume|register-terminal|settle|statement|payout-file|
adopt-legacy` — merchants (特约商户) of a tenant: onboard them under contract, suspend them, register their POS
terminals, settle a Beijing day (日结算), print a merchant's statement (结算单; ``--csv``: in fen for
machines), write a day's payout file for the bank (代付文件) and adopt the old by-name ledger balances. Thin over
citycard.tenants.merchants.services and selectors; amounts shown in yuan."""

from __future__ import annotations

import datetime as dt

from django.utils.translation import gettext, pgettext
from django_tenants.utils import tenant_context
from rich.console import Console
from rich.table import Table

from citycard.platform.errors import DomainError, NotFound
from citycard.platform.management.base import PlatformCommand, beijing
from citycard.platform.selectors import tenant_by_code
from citycard.tenants.merchants import selectors, services
from citycard.tenants.merchants.models import Category, Means
from citycard.tenants.terminals.management.commands.terminal import _key_argument
from citycard.terminal_kit.money import yuan


def _day(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise DomainError(
            gettext("--%(option)s %(value)r is not a date (YYYY-MM-DD)") % {"option": "day", "value": value},
            field="day",
        ) from None


class Command(PlatformCommand):
    help = (
        "Merchants (特约商户): onboard, list, suspend, resume, register a POS terminal, settle a day (日结算),"
        " print a statement (结算单)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="tenant code")
        sub = parser.add_subparsers(dest="action", required=True)
        on = sub.add_parser("onboard", help="onboard a merchant under contract (商户入网)")
        on.add_argument("code")
        on.add_argument("--name", required=True)
        on.add_argument("--licence", required=True, help="unified social credit code, 18 characters")
        on.add_argument("--category", required=True, choices=Category.values, help="MCC, e.g. 5814 canteen")
        on.add_argument("--bank", required=True, help="settlement bank")
        on.add_argument("--account", required=True, help="settlement bank account number")
        on.add_argument(
            "--fee-bps", type=int, required=True, help="fee rate in basis points, e.g. 60 = 0.6 %%"
        )
        on.add_argument("--means", default="purse,account,code", help=f"accepted: {','.join(Means.values)}")
        on.add_argument("--department", default="", help="the onboarding department (empty: the city)")
        ls = sub.add_parser("list", help="merchants with their state, fee rate and balance to settle")
        ls.add_argument("--state", choices=["active", "suspended", "closed"])
        sus = sub.add_parser("suspend", help="stop a merchant taking payments")
        sus.add_argument("code")
        sus.add_argument("--reason", required=True)
        res = sub.add_parser("resume", help="let a suspended merchant take payments again")
        res.add_argument("code")
        reg = sub.add_parser("register-terminal", help="register a POS terminal to a merchant")
        reg.add_argument("code")
        reg.add_argument("terminal_id")
        reg.add_argument("--location", required=True)
        reg.add_argument("--public-key", help="base64 or hex of the 32-byte Ed25519 public key")
        reg.add_argument(
            "--generate-key", metavar="PATH", help="make a key pair; private key (base64) to PATH"
        )
        st = sub.add_parser("settle", help="book uploaded taps, settle every merchant for a Beijing day")
        st.add_argument("--day", required=True, help="YYYY-MM-DD, a day that is over")
        stm = sub.add_parser("statement", help="a merchant's statement of a settled day")
        stm.add_argument("code")
        stm.add_argument("--day", required=True, help="YYYY-MM-DD")
        stm.add_argument("--csv", action="store_true", help="CSV in fen, for machines")
        po = sub.add_parser("payout-file", help="a settled day's payout file for the bank (代付文件)")
        po.add_argument("--day", required=True, help="YYYY-MM-DD, a settled day")
        po.add_argument("--out", help="write the file here (default: print it)")
        al = sub.add_parser(
            "adopt-legacy", help="move the old by-name payees' balances (merchant:<name>) onto merchants"
        )
        al.add_argument(
            "--map",
            action="append",
            default=[],
            metavar="NAME=CODE",
            help="the merchant code adopting the old name's balance (repeatable)",
        )

    def handle(self, *args, **opts):
        tenant = tenant_by_code(opts["tenant"])
        if tenant is None or tenant.is_platform:
            raise NotFound(gettext("no tenant with code %(code)r") % {"code": opts["tenant"]}, field="tenant")
        console = Console(file=self.stdout, width=160)
        with tenant_context(tenant):
            getattr(self, "_" + opts["action"].replace("-", "_"))(console, opts)

    def _onboard(self, console, opts):
        merchant = services.merchant_onboard(
            code=opts["code"],
            name=opts["name"],
            licence_no=opts["licence"],
            category=opts["category"],
            settlement_bank=opts["bank"],
            settlement_account=opts["account"],
            fee_bps=opts["fee_bps"],
            accepted_means=[m.strip() for m in opts["means"].split(",") if m.strip()],
            department=opts["department"],
            actor=self.actor,
        )
        console.print(
            gettext(
                "merchant %(merchant)s (%(name)s) onboarded: fee %(fee_bps)s bps, settles to %(bank)s %(account)s"
            )
            % {
                "merchant": merchant.code,
                "name": merchant.name,
                "fee_bps": merchant.fee_bps,
                "bank": merchant.settlement_bank,
                "account": merchant.settlement_account_masked,
            }
        )

    def _list(self, console, opts):
        table = Table(
            gettext("merchant"),
            gettext("name"),
            gettext("category"),
            gettext("department"),
            gettext("means"),
            gettext("fee bps"),
            gettext("state"),
            gettext("to settle"),
        )
        for m in selectors.merchants_list(state=opts.get("state")):
            table.add_row(
                m.code,
                m.name,
                m.get_category_display(),
                m.department or "—",
                ",".join(m.accepted_means),
                str(m.fee_bps),
                f"{m.get_state_display()} ({m.state})",
                yuan(m.payable.balance_fen),
            )
        console.print(table)

    def _suspend(self, console, opts):
        merchant = services.merchant_suspend(code=opts["code"], reason=opts["reason"], actor=self.actor)
        console.print(
            gettext("merchant %(merchant)s suspended: %(reason)s")
            % {"merchant": merchant.code, "reason": merchant.state_reason}
        )

    def _resume(self, console, opts):
        merchant = services.merchant_state_set(code=opts["code"], state="active", actor=self.actor)
        console.print(gettext("merchant %(merchant)s active") % {"merchant": merchant.code})

    def _register_terminal(self, console, opts):
        link = services.merchant_terminal_register(
            merchant_code=opts["code"],
            terminal_id=opts["terminal_id"],
            public_key=_key_argument(opts),
            location=opts["location"],
            actor=self.actor,
        )
        console.print(
            gettext("terminal %(terminal)s registered to merchant %(merchant)s")
            % {"terminal": link.terminal.terminal_id, "merchant": link.merchant.code}
        )

    def _settle(self, console, opts):
        day = _day(opts["day"])
        table = Table(
            gettext("merchant"),
            pgettext("merchant settlement", "payments"),
            gettext("refunds"),
            gettext("gross (yuan)"),
            gettext("refunded (yuan)"),
            pgettext("merchant settlement", "fee (yuan)"),
            gettext("net paid (yuan)"),
        )
        for s in services.merchants_settle_day(day=day, actor=self.actor):
            table.add_row(
                s.merchant.code,
                str(s.payments),
                str(s.refunds),
                yuan(s.gross_fen),
                yuan(s.refunds_fen),
                yuan(s.fee_fen),
                yuan(s.net_fen),
            )
        console.print(gettext("settlement of %(day)s (Beijing)") % {"day": day})
        console.print(table)

    def _statement(self, console, opts):
        day = _day(opts["day"])
        statement = selectors.statement_get(merchant_code=opts["code"], day=day)
        if statement is None:
            raise NotFound(
                gettext("merchant %(merchant)s has no settlement of %(day)s")
                % {"merchant": opts["code"], "day": day},
                field="day",
            )
        if opts["csv"]:
            self.stdout.write(selectors.statement_csv(statement), ending="")
            return
        s = statement.settlement
        console.print(
            gettext("%(name)s (%(merchant)s) — statement of %(day)s")
            % {"name": s.merchant.name, "merchant": s.merchant.code, "day": day}
        )
        table = Table(
            gettext("time (Beijing)"),
            gettext("kind"),
            gettext("reference"),
            gettext("means"),
            gettext("card"),
            gettext("amount (yuan)"),
        )
        for line in statement.lines:
            table.add_row(
                beijing(line.at, seconds=True),
                line.kind,
                line.reference,
                line.means,
                selectors.card_no_mask(line.card_no),
                yuan(line.amount_fen),
            )
        console.print(table)
        console.print(
            gettext(
                "gross %(gross)s, refunds %(refunds)s, fee %(fee)s (%(fee_bps)s bps), net paid %(net)s "
                "to %(bank)s %(account)s"
            )
            % {
                "gross": yuan(s.gross_fen),
                "refunds": yuan(s.refunds_fen),
                "fee": yuan(s.fee_fen),
                "fee_bps": s.fee_bps,
                "net": yuan(s.net_fen),
                "bank": s.merchant.settlement_bank,
                "account": s.merchant.settlement_account_masked,
            }
        )

    def _payout_file(self, console, opts):
        built = services.payout_file_build(day=_day(opts["day"]), actor=self.actor)
        if not opts["out"]:
            self.stdout.write(built.text, ending="")
            return
        with open(opts["out"], "w", encoding="utf-8", newline="") as handle:
            handle.write(built.text)
        console.print(
            gettext("%(name)s: %(count)s transfer(s), %(total)s, SHA-256 %(digest)s")
            % {
                "name": opts["out"],
                "count": built.count,
                "total": yuan(built.total_fen),
                "digest": built.digest,
            }
        )

    def _adopt_legacy(self, console, opts):
        mapping = {}
        for item in opts["map"]:
            name, sep, code = item.partition("=")
            if not sep or not name or not code:
                raise DomainError(gettext("--map %(value)r is not NAME=CODE") % {"value": item}, field="map")
            mapping[name] = code
        result = services.merchant_legacy_adopt(mapping=mapping, actor=self.actor)
        console.print(
            gettext(
                "old by-name payees: %(adopted)s adopted, %(already)s adopted before, %(empty)s empty,"
                " %(unmapped)s without a merchant named (--map NAME=CODE)"
            )
            % {k: len(v) for k, v in result.items()}
        )
        for name in result["unmapped"]:
            console.print(f"  {name}")
