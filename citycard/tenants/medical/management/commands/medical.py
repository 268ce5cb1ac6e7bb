"""`citycard medical --tenant CODE policy list|set | catalogue list|set|import|export | claims | claim ID
| insured CARD [--set-category C] | year close YEAR` — medical roaming (异地就医) without a Python shell.

Amounts are typed and shown in yuan (two decimals), ratios and shares in percent; the services keep fen
and basis points. Every change goes through an audited service, the actor being ``cli``."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal, InvalidOperation
from pathlib import Path

from django.utils import timezone
from django_tenants.utils import tenant_context
from rich.console import Console
from rich.table import Table

from citycard.platform.errors import DomainError, NotFound
from citycard.platform.management.base import PlatformCommand, beijing
from citycard.platform.selectors import tenant_by_code
from citycard.tenants.medical import selectors, services
from citycard.tenants.medical.models import ClaimRole, Coverage, InsuredCategory, ItemCategory
from citycard.tenants.medical.selectors import percent
from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.money import yuan

CLASSES = {"A": "甲", "B": "乙", "C": "丙"}


def fen_of(value: str, field: str) -> int:
    """Yuan as typed (``1234.5``, ``1,234.50``) to fen; more than two decimals is refused."""
    try:
        amount = Decimal(value.replace(",", ""))
    except InvalidOperation:
        raise DomainError(
            f"--{field} {value!r} is not an amount in yuan (e.g. 500.00)", field=field
        ) from None
    if amount < 0 or amount != amount.quantize(Decimal("0.01")):
        raise DomainError(f"--{field} {value!r}: yuan, 0 or more, at most two decimals", field=field)
    return int(amount * 100)


def bps_of(value: str, field: str) -> int:
    """Percent as typed (``80``, ``12.5``) to basis points."""
    try:
        share = Decimal(value.rstrip("%"))
    except InvalidOperation:
        raise DomainError(f"--{field} {value!r} is not a percentage (e.g. 80 or 12.5)", field=field) from None
    if not 0 <= share <= 100 or share != share.quantize(Decimal("0.01")):
        raise DomainError(f"--{field} {value!r}: 0 to 100, at most two decimals", field=field)
    return int(share * 100)


def date_of(value: str | None, field: str) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise DomainError(f"--{field} {value!r} is not a date (YYYY-MM-DD)", field=field) from None


class Command(PlatformCommand):
    help = (
        "Medical roaming of a tenant (异地就医): policies, the catalogue, claims, insured persons' years, "
        "closing a year."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="tenant code")
        sub = parser.add_subparsers(dest="topic", required=True)

        policy = sub.add_parser(
            "policy", help="the insured place's policies (待遇) per insured category and year"
        )
        policy_sub = policy.add_subparsers(dest="action", required=True)
        plist = policy_sub.add_parser("list", help="policies, newest year first")
        plist.add_argument("--year", type=int)
        pset = policy_sub.add_parser(
            "set", help="create a policy, or change the one starting on --from (or --id)"
        )
        pset.add_argument("--category", default="employee", choices=InsuredCategory.values)
        pset.add_argument("--year", type=int, required=True)
        pset.add_argument("--from", dest="effective_from", help="first day in force (default 1 January)")
        pset.add_argument(
            "--to", dest="effective_to", help="last day in force, inclusive (default 31 December)"
        )
        pset.add_argument("--deductible", required=True, help="起付线 in yuan, e.g. 500.00")
        pset.add_argument("--cap", required=True, help="封顶线 in yuan, e.g. 100000.00")
        pset.add_argument(
            "--ratio",
            action="append",
            default=[],
            metavar="CATEGORY=PERCENT",
            help=f"报销比例 of an item category ({', '.join(ItemCategory.values)}), e.g. drug=80; repeat it",
        )
        pset.add_argument("--id", type=int, help="change this policy (e.g. to end it earlier)")

        cat = sub.add_parser("catalogue", help="the treatment place's catalogue (医保目录)")
        cat_sub = cat.add_subparsers(dest="action", required=True)
        clist = cat_sub.add_parser("list", help="items of the catalogue")
        clist.add_argument("--category", choices=ItemCategory.values)
        clist.add_argument("--class", dest="coverage", choices=Coverage.values)
        cset = cat_sub.add_parser("set", help="add an item or change it (by code)")
        cset.add_argument("code")
        cset.add_argument("--name", required=True)
        cset.add_argument("--category", required=True, choices=ItemCategory.values)
        cset.add_argument("--price", required=True, help="unit price in yuan, e.g. 12.50")
        cset.add_argument(
            "--class", dest="coverage", required=True, choices=Coverage.values, help="A 甲, B 乙, C 丙"
        )
        cset.add_argument(
            "--self-pay", default="0", help="乙类 only: the patient's share in percent, e.g. 10"
        )
        cset.add_argument("--withdrawn", action="store_true", help="outside the catalogue from now on")
        cimp = cat_sub.add_parser("import", help="add or change items from a CSV file (bad rows listed)")
        cimp.add_argument("file")
        cimp.add_argument("--errors", metavar="PATH", help="also write the bad rows (line, reason) to PATH")
        cexp = cat_sub.add_parser("export", help="the catalogue as CSV (the import's format)")
        cexp.add_argument("--out", metavar="PATH", help="write to PATH instead of the terminal")

        claims = sub.add_parser("claims", help="claims, newest treatment first")
        claims.add_argument(
            "--role", choices=ClaimRole.values, help="treatment: our hospitals'; insured: ours"
        )
        claims.add_argument("--card", help="one card's claims")
        claims.add_argument("--limit", type=int, default=50)
        claim = sub.add_parser("claim", help="one claim with its lines and adjudication")
        claim.add_argument("claim_id")
        claim.add_argument("--json", action="store_true", help="as JSON (amounts in fen)")

        insured = sub.add_parser("insured", help="an insured person's year to date (年度累计)")
        insured.add_argument("card")
        insured.add_argument("--year", type=int, help="default: this year")
        insured.add_argument(
            "--set-category", choices=InsuredCategory.values, help="their insured category for the year"
        )

        year = sub.add_parser("year", help="close a year (年度清算): its claims are refused from then on")
        year_sub = year.add_subparsers(dest="action", required=True)
        close = year_sub.add_parser("close", help="close a year that has ended")
        close.add_argument("year", type=int)

    def handle(self, *args, **opts):
        tenant = tenant_by_code(opts["tenant"])
        if tenant is None or tenant.is_platform:
            raise NotFound(f"no tenant with code {opts['tenant']!r}", field="tenant")
        console = Console(file=self.stdout, width=140)
        name = opts["topic"] + (f"_{opts['action']}" if opts.get("action") else "")
        with tenant_context(tenant):
            getattr(self, f"_{name}")(console, opts)

    # --- policies -------------------------------------------------------------------------------------

    def _policy_list(self, console, opts):
        table = Table(
            "id",
            "category",
            "year",
            "in force",
            "起付线 (yuan)",
            "报销比例",
            "封顶线 (yuan)",
            "claims",
            title="Policies (待遇)",
        )
        for p in selectors.policies(year=opts.get("year")):
            table.add_row(
                str(p.pk),
                p.get_category_display(),
                str(p.year),
                f"{p.effective_from} – {p.effective_to}",
                yuan(p.deductible_fen),
                ", ".join(f"{k} {percent(v)}" for k, v in sorted(p.ratios_bps.items())) or "—",
                yuan(p.annual_cap_fen),
                str(p.claim_count),
            )
        console.print(table)

    def _policy_set(self, console, opts):
        ratios = {}
        for pair in opts["ratio"]:
            category, _sep, value = pair.partition("=")
            if not _sep:
                raise DomainError(f"--ratio {pair!r} is CATEGORY=PERCENT, e.g. drug=80", field="ratio")
            ratios[category.strip()] = bps_of(value.strip(), "ratio")
        policy = services.policy_set(
            policy_id=opts.get("id"),
            category=opts["category"],
            year=opts["year"],
            effective_from=date_of(opts.get("effective_from"), "from"),
            effective_to=date_of(opts.get("effective_to"), "to"),
            deductible_fen=fen_of(opts["deductible"], "deductible"),
            ratios_bps=ratios,
            annual_cap_fen=fen_of(opts["cap"], "cap"),
            actor=self.actor,
        )
        console.print(
            f"policy {policy.pk}: {policy.get_category_display()} {policy.effective_from} – {policy.effective_to}, "
            f"起付线 {yuan(policy.deductible_fen)}, 封顶线 {yuan(policy.annual_cap_fen)}, 报销比例 "
            + (", ".join(f"{k} {percent(v)}" for k, v in sorted(policy.ratios_bps.items())) or "none")
        )

    # --- catalogue ------------------------------------------------------------------------------------

    def _catalogue_list(self, console, opts):
        items = list(selectors.catalogue_items(category=opts.get("category"), coverage=opts.get("coverage")))
        table = Table("code", "name", "category", "class", "unit price (yuan)", "self-pay", "in catalogue")
        for i in items:
            table.add_row(
                i.code,
                i.name,
                i.category,
                f"{i.coverage} {CLASSES[i.coverage]}",
                yuan(i.unit_price_fen),
                percent(i.self_pay_bps) if i.coverage == Coverage.B else "",
                "yes" if i.active else "withdrawn",
            )
        console.print(table)
        console.print(f"{len(items)} items")

    def _catalogue_set(self, console, opts):
        item = services.catalogue_item_save(
            code=opts["code"],
            name=opts["name"],
            category=opts["category"],
            unit_price_fen=fen_of(opts["price"], "price"),
            coverage=opts["coverage"],
            self_pay_bps=bps_of(opts["self_pay"], "self-pay"),
            active=not opts["withdrawn"],
            actor=self.actor,
        )
        console.print(
            f"{item.code} {item.name}: {item.category}, class {item.coverage} {CLASSES[item.coverage]}, "
            f"{yuan(item.unit_price_fen)}" + ("" if item.active else ", withdrawn")
        )

    def _catalogue_import(self, console, opts):
        path = Path(opts["file"])
        if not path.is_file():
            raise DomainError(f"{path} is not a file", field="file")
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise DomainError(f"{path.name} is not UTF-8 text: save it as CSV UTF-8", field="file") from None
        report = services.catalogue_import(text=text, source=path.name, actor=self.actor)
        console.print(
            f"{report.rows} rows: {report.created} items added, {report.changed} changed, "
            f"{report.unchanged} unchanged; {len(report.errors)} bad rows"
        )
        if report.errors:
            table = Table("line", "what is wrong", title="Bad rows (not imported)")
            for line, reason in report.errors[:50]:
                table.add_row(str(line), reason)
            console.print(table)
        if opts.get("errors"):
            Path(opts["errors"]).write_text(
                "line,reason\n" + "".join(f'{line},"{reason}"\n' for line, reason in report.errors),
                encoding="utf-8",
            )

    def _catalogue_export(self, console, opts):
        text = selectors.catalogue_csv(selectors.catalogue_items())
        if opts.get("out"):
            Path(opts["out"]).write_text(text, encoding="utf-8")
            console.print(f"{text.count(chr(10)) - 1} items written to {opts['out']}")
        else:
            self.stdout.write(text, ending="")

    # --- claims ---------------------------------------------------------------------------------------

    def _claims(self, console, opts):
        qs = selectors.claims(role=opts.get("role"))
        if opts.get("card"):
            qs = qs.filter(card_no=opts["card"])
        table = Table(
            "claim",
            "role",
            "treated",
            "card",
            "hospital",
            "total (yuan)",
            "fund (yuan)",
            "patient (yuan)",
            "status",
        )
        for c in qs[: opts["limit"]]:
            result = selectors.claim_result(c)
            table.add_row(
                c.claim_id,
                c.role,
                beijing(c.treated_at),
                c.card_no,
                c.department,
                yuan(c.total_fen),
                yuan(result.fund_fen),
                yuan(result.patient_fen),
                result.status + (f": {result.refusal}" if result.refusal else ""),
            )
        console.print(table)

    def _claim(self, console, opts):
        found = list(selectors.claims().filter(claim_id=opts["claim_id"]))
        if not found:
            raise NotFound(f"no claim {opts['claim_id']!r} here (citycard medical claims lists them)")
        for c in found:
            result = selectors.claim_result(c)
            if opts.get("json"):
                self.stdout.write(
                    json.dumps(
                        {
                            "claim_id": c.claim_id,
                            "role": c.role,
                            "card_no": c.card_no,
                            "hospital": c.department,
                            "treated_at": c.treated_at.isoformat(),
                            "total_fen": c.total_fen,
                            "status": result.status,
                            "fund_fen": result.fund_fen,
                            "patient_fen": result.patient_fen,
                            "refusal": result.refusal,
                            "reason": result.reason,
                            "lines": c.items,
                            "adjudication": result.detail,
                        },
                        ensure_ascii=False,
                        indent=1,
                    )
                )
                continue
            console.print(
                f"[bold]{c.claim_id}[/bold] ({c.get_role_display()}): card {c.card_no} at {c.department}, treated "
                f"{beijing(c.treated_at)}; total {yuan(c.total_fen)}"
            )
            console.print(
                f"{result.status}: fund {yuan(result.fund_fen) or '—'}, patient {yuan(result.patient_fen) or '—'}"
                + (f" — {result.refusal}: {result.reason}" if result.refusal else "")
            )
            lines = Table(
                "code",
                "item",
                "category",
                "class",
                "qty",
                "unit (yuan)",
                "amount (yuan)",
                "eligible (yuan)",
                "outcome",
            )
            for line in c.items:
                lines.add_row(
                    line["code"],
                    line.get("name", ""),
                    line.get("category", ""),
                    line.get("coverage", ""),
                    str(line["quantity"]),
                    yuan(line.get("unit_price_fen")),
                    yuan(line["amount_fen"]),
                    yuan(line["eligible_fen"]),
                    line.get("outcome", ""),
                )
            console.print(lines)
            categories = result.detail.get("categories", {})
            if categories:
                adj = Table(
                    "category",
                    "eligible (yuan)",
                    "起付线 taken (yuan)",
                    "报销比例",
                    "fund (yuan)",
                    title="Adjudication",
                )
                for name, row in sorted(categories.items()):
                    adj.add_row(
                        name,
                        yuan(row["eligible_fen"]),
                        yuan(row["deductible_fen"]),
                        percent(row["ratio_bps"]),
                        yuan(row["fund_fen"]),
                    )
                console.print(adj)
                console.print(
                    f"before the 封顶线 {yuan(result.detail['before_cap_fen'])}; the cap left "
                    f"{yuan(result.detail['cap_left_fen'])}"
                )

    # --- insured persons, years -----------------------------------------------------------------------

    def _insured(self, console, opts):
        year = opts.get("year") or timezone.now().astimezone(BEIJING).year
        if opts.get("set_category"):
            services.insured_year_set_category(
                card_no=opts["card"], year=year, category=opts["set_category"], actor=self.actor
            )
        use = selectors.insured_year_use(card_no=opts["card"], year=year)
        console.print(f"{use.card_no} in {use.year}: {InsuredCategory(use.category).label}")
        if use.policy is None:
            console.print("no policy of that category in force: their claims are refused (no_policy)")
        else:
            console.print(
                f"起付线 {yuan(use.policy.deductible_fen)}: {yuan(use.deductible_used_fen)} used, "
                f"{yuan(use.deductible_left_fen)} left"
            )
            console.print(
                f"封顶线 {yuan(use.policy.annual_cap_fen)}: {yuan(use.fund_paid_fen)} paid by the fund, "
                f"{yuan(use.cap_left_fen)} left"
            )
        console.print(f"{use.claims} claims adjudicated, {use.refused} refused")

    def _year_close(self, console, opts):
        closed = services.medical_year_close(year=opts["year"], actor=self.actor)
        console.print(f"{closed.year} closed: claims treated in it are refused from now on")
