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
from django.utils.translation import gettext
from django_tenants.utils import tenant_context
from rich.console import Console
from rich.table import Table

from citycard.platform.errors import DomainError, NotFound
from citycard.platform.management.base import PlatformCommand, beijing
from citycard.platform.reasons import reason_text
from citycard.platform.selectors import tenant_by_code
from citycard.tenants.medical import selectors, services
from citycard.tenants.medical.models import ClaimRole, Coverage, InsuredCategory, ItemCategory
from citycard.tenants.medical.selectors import percent
from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.money import yuan

CLASSES = {"A": "甲", "B": "乙", "C": "丙"}


def status_label(status: str) -> str:
    """A claim's status as a person reads it (the code kept beside it for a clerk)."""
    labels = {
        selectors.ClaimStatus.SUBMITTED: gettext("submitted, awaiting the insured place"),
        selectors.ClaimStatus.ADJUDICATED: gettext("adjudicated"),
        selectors.ClaimStatus.REFUSED: gettext("refused"),
    }
    label = labels.get(status)
    return f"{label} ({status})" if label else status


def outcome_label(outcome: str) -> str:
    """A claim line's outcome as a person reads it, with its code (the admin's words)."""
    labels = {
        "covered": gettext("Class A: covered"),
        "partly_covered": gettext("Class B: covered after the self-pay share"),
        "self_pay": gettext("Class C: self-pay"),
        "not_in_catalogue": gettext("outside the catalogue: self-pay"),
    }
    label = labels.get(outcome)
    return f"{label} ({outcome})" if label else outcome


def fen_of(value: str, field: str) -> int:
    """Yuan as typed (``1234.5``, ``1,234.50``) to fen; more than two decimals is refused."""
    try:
        amount = Decimal(value.replace(",", ""))
    except InvalidOperation:
        raise DomainError(
            gettext("--%(option)s %(value)r is not an amount in yuan (e.g. 500.00)")
            % {"option": field, "value": value},
            field=field,
        ) from None
    if amount < 0 or amount != amount.quantize(Decimal("0.01")):
        raise DomainError(
            gettext("--%(option)s %(value)r: yuan, 0 or more, at most two decimals")
            % {"option": field, "value": value},
            field=field,
        )
    return int(amount * 100)


def bps_of(value: str, field: str) -> int:
    """Percent as typed (``80``, ``12.5``) to basis points."""
    try:
        share = Decimal(value.rstrip("%"))
    except InvalidOperation:
        raise DomainError(
            gettext("--%(option)s %(value)r is not a percentage (e.g. 80 or 12.5)")
            % {"option": field, "value": value},
            field=field,
        ) from None
    if not 0 <= share <= 100 or share != share.quantize(Decimal("0.01")):
        raise DomainError(
            gettext("--%(option)s %(value)r: 0 to 100, at most two decimals")
            % {"option": field, "value": value},
            field=field,
        )
    return int(share * 100)


def date_of(value: str | None, field: str) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise DomainError(
            gettext("--%(option)s %(value)r is not a date (YYYY-MM-DD)") % {"option": field, "value": value},
            field=field,
        ) from None


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
            raise NotFound(gettext("no tenant with code %(code)r") % {"code": opts["tenant"]}, field="tenant")
        console = Console(file=self.stdout, width=200)
        name = opts["topic"] + (f"_{opts['action']}" if opts.get("action") else "")
        with tenant_context(tenant):
            getattr(self, f"_{name}")(console, opts)

    # --- policies -------------------------------------------------------------------------------------

    def _policy_list(self, console, opts):
        table = Table(
            "id",
            gettext("category"),
            gettext("year"),
            gettext("in force"),
            gettext("起付线 (yuan)"),
            gettext("报销比例"),
            gettext("封顶线 (yuan)"),
            gettext("claims"),
            title=gettext("Policies (待遇)"),
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
                raise DomainError(
                    gettext("--ratio %(pair)r is CATEGORY=PERCENT, e.g. drug=80") % {"pair": pair},
                    field="ratio",
                )
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
            gettext(
                "policy %(policy)s: %(category)s %(start)s – %(end)s, 起付线 %(deductible)s, 封顶线 %(cap)s, "
                "报销比例 %(ratios)s"
            )
            % {
                "policy": policy.pk,
                "category": policy.get_category_display(),
                "start": policy.effective_from,
                "end": policy.effective_to,
                "deductible": yuan(policy.deductible_fen),
                "cap": yuan(policy.annual_cap_fen),
                "ratios": ", ".join(f"{k} {percent(v)}" for k, v in sorted(policy.ratios_bps.items()))
                or gettext("none"),
            }
        )

    # --- catalogue ------------------------------------------------------------------------------------

    def _catalogue_list(self, console, opts):
        items = list(selectors.catalogue_items(category=opts.get("category"), coverage=opts.get("coverage")))
        table = Table(
            gettext("code"),
            gettext("name"),
            gettext("category"),
            gettext("class"),
            gettext("unit price (yuan)"),
            gettext("self-pay"),
            gettext("in catalogue"),
        )
        for i in items:
            table.add_row(
                i.code,
                i.name,
                i.category,
                f"{i.coverage} {CLASSES[i.coverage]}",
                yuan(i.unit_price_fen),
                percent(i.self_pay_bps) if i.coverage == Coverage.B else "",
                gettext("yes") if i.active else gettext("withdrawn"),
            )
        console.print(table)
        console.print(gettext("%(count)s items") % {"count": len(items)})

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
            gettext("%(code)s %(name)s: %(category)s, class %(coverage)s %(class_zh)s, %(price)s")
            % {
                "code": item.code,
                "name": item.name,
                "category": item.category,
                "coverage": item.coverage,
                "class_zh": CLASSES[item.coverage],
                "price": yuan(item.unit_price_fen),
            }
            + ("" if item.active else gettext(", withdrawn"))
        )

    def _catalogue_import(self, console, opts):
        path = Path(opts["file"])
        if not path.is_file():
            raise DomainError(gettext("%(path)s is not a file") % {"path": path}, field="file")
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise DomainError(
                gettext("%(file)s is not UTF-8 text: save it as CSV UTF-8") % {"file": path.name},
                field="file",
            ) from None
        report = services.catalogue_import(text=text, source=path.name, actor=self.actor)
        console.print(
            gettext(
                "%(rows)s rows: %(created)s items added, %(changed)s changed, %(unchanged)s unchanged; "
                "%(bad)s bad rows"
            )
            % {
                "rows": report.rows,
                "created": report.created,
                "changed": report.changed,
                "unchanged": report.unchanged,
                "bad": len(report.errors),
            }
        )
        if report.errors:
            table = Table(gettext("line"), gettext("what is wrong"), title=gettext("Bad rows (not imported)"))
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
            console.print(
                gettext("%(count)s items written to %(path)s")
                % {"count": text.count(chr(10)) - 1, "path": opts["out"]}
            )
        else:
            self.stdout.write(text, ending="")

    # --- claims ---------------------------------------------------------------------------------------

    def _claims(self, console, opts):
        qs = selectors.claims(role=opts.get("role"))
        if opts.get("card"):
            qs = qs.filter(card_no=opts["card"])
        table = Table(
            gettext("claim"),
            gettext("role"),
            gettext("treated"),
            gettext("card"),
            gettext("hospital"),
            gettext("total (yuan)"),
            gettext("fund (yuan)"),
            gettext("patient (yuan)"),
            gettext("status"),
        )
        for column in (table.columns[0], table.columns[3]):  # copied from here into other commands
            column.no_wrap = True
        for c in qs[: opts["limit"]]:
            result = selectors.claim_result(c)
            table.add_row(
                c.claim_id,
                c.role,  # the --role value
                beijing(c.treated_at),
                c.card_no,
                c.department,
                yuan(c.total_fen),
                yuan(result.fund_fen),
                yuan(result.patient_fen),
                status_label(result.status) + (f": {reason_text(result.refusal)}" if result.refusal else ""),
            )
        console.print(table)

    def _claim(self, console, opts):
        found = list(selectors.claims().filter(claim_id=opts["claim_id"]))
        if not found:
            raise NotFound(
                gettext("no claim %(claim)r here (citycard medical claims lists them)")
                % {"claim": opts["claim_id"]}
            )
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
                gettext(
                    "[bold]%(claim)s[/bold] (%(role)s): card %(card)s at %(hospital)s, treated %(treated)s; "
                    "total %(total)s"
                )
                % {
                    "claim": c.claim_id,
                    "role": c.get_role_display(),
                    "card": c.card_no,
                    "hospital": c.department,
                    "treated": beijing(c.treated_at),
                    "total": yuan(c.total_fen),
                }
            )
            console.print(
                gettext("%(status)s: fund %(fund)s, patient %(patient)s")
                % {
                    "status": status_label(result.status),
                    "fund": yuan(result.fund_fen) or "—",
                    "patient": yuan(result.patient_fen) or "—",
                }
                + (f" — {reason_text(result.refusal)}: {result.reason}" if result.refusal else "")
            )
            lines = Table(
                gettext("code"),
                gettext("item"),
                gettext("category"),
                gettext("class"),
                gettext("qty"),
                gettext("unit (yuan)"),
                gettext("amount (yuan)"),
                gettext("eligible (yuan)"),
                gettext("outcome"),
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
                    outcome_label(line.get("outcome", "")),
                )
            console.print(lines)
            categories = result.detail.get("categories", {})
            if categories:
                adj = Table(
                    gettext("category"),
                    gettext("eligible (yuan)"),
                    gettext("起付线 taken (yuan)"),
                    gettext("报销比例"),
                    gettext("fund (yuan)"),
                    title=gettext("Adjudication"),
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
                    gettext("before the 封顶线 %(before_cap)s; the cap left %(cap_left)s")
                    % {
                        "before_cap": yuan(result.detail["before_cap_fen"]),
                        "cap_left": yuan(result.detail["cap_left_fen"]),
                    }
                )

    # --- insured persons, years -----------------------------------------------------------------------

    def _insured(self, console, opts):
        year = opts.get("year") or timezone.now().astimezone(BEIJING).year
        if opts.get("set_category"):
            services.insured_year_set_category(
                card_no=opts["card"], year=year, category=opts["set_category"], actor=self.actor
            )
        use = selectors.insured_year_use(card_no=opts["card"], year=year)
        console.print(
            gettext("%(card)s in %(year)s: %(category)s")
            % {"card": use.card_no, "year": use.year, "category": InsuredCategory(use.category).label}
        )
        if use.policy is None:
            console.print(
                gettext("no policy of that category in force: their claims are refused (no_policy)")
            )
        else:
            console.print(
                gettext("起付线 %(deductible)s: %(used)s used, %(left)s left")
                % {
                    "deductible": yuan(use.policy.deductible_fen),
                    "used": yuan(use.deductible_used_fen),
                    "left": yuan(use.deductible_left_fen),
                }
            )
            console.print(
                gettext("封顶线 %(cap)s: %(paid)s paid by the fund, %(left)s left")
                % {
                    "cap": yuan(use.policy.annual_cap_fen),
                    "paid": yuan(use.fund_paid_fen),
                    "left": yuan(use.cap_left_fen),
                }
            )
        console.print(
            gettext("%(claims)s claims adjudicated, %(refused)s refused")
            % {"claims": use.claims, "refused": use.refused}
        )

    def _year_close(self, console, opts):
        closed = services.medical_year_close(year=opts["year"], actor=self.actor)
        console.print(
            gettext("%(year)s closed: claims treated in it are refused from now on") % {"year": closed.year}
        )
