"""Demo step: card schemes, a few hundred cardholders with cards per demo city (elderly, students, disabled
among them) through batch issuance, lost cards on the hotlist, online accounts with a subsidy run, and the
counties' departments and service points with their onboarding checklist. Safe to run again."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

from django.conf import settings
from django.utils.translation import gettext
from django_tenants.utils import tenant_context
from rich.table import Table

from citycard.tenants.accounts import services as accounts
from citycard.tenants.cards import batch
from citycard.tenants.cards import services as cards
from citycard.tenants.cards.models import Card, Cardholder, CardholderCategory, CardState
from citycard.tenants.cards.pii import id_number_build
from citycard.tenants.cards.selectors import hotlist_version, schemes_visible
from citycard.tenants.departments import services as departments
from citycard.tenants.departments.models import Department, ServicePoint
from citycard.tenants.payments import drill
from citycard.tenants.payments import selectors as payments_selectors
from citycard.tenants.payments import services as payments
from citycard.tenants.payments.protocols import beijing_now
from citycard.terminal_kit.money import yuan

HOLDERS_PER_CITY = 300
STRAY_FEN = 2000  # a 长款 in the WeChat Pay trade bill: ¥20.00 the provider took for no order of the city
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁沈"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国文斌玉兰春梅海燕志红"
_DISTRICTS = {
    "310000": "310101",
    "330100": "330102",
    "330400": "330402",
    "441900": "441900",
    "440300": "440303",
}


def _csv(path: Path, division: str, code: str, holders: int = HOLDERS_PER_CITY) -> None:
    """A deterministic application file: the same people on every run."""
    rng = random.Random(f"cards-{code}")
    district = _DISTRICTS.get(division, division)
    lines = ["name,id_number,phone,scheme,employer,community,local_hukou,residence_permit,categories"]
    for i in range(holders):
        if i % 3 == 0:
            birth = dt.date(1936, 1, 1) + dt.timedelta(days=rng.randrange(20 * 365))  # 70+: 敬老
        elif i % 3 == 1:
            birth = dt.date(2006, 9, 1) + dt.timedelta(days=rng.randrange(12 * 365))  # students
        else:
            birth = dt.date(1960, 1, 1) + dt.timedelta(days=rng.randrange(40 * 365))
        number = id_number_build(division=district, birth_date=birth, sequence=i)
        age = 2026 - birth.year
        categories = []
        if age >= 70:  # 敬老 from the month after the 70th birthday (次月起), as the concession is granted
            categories.append(f"elderly:{cards.age_category_from(birth, years=70)}")
        elif 6 <= age <= 22:
            categories.append(f"student:{dt.date(2026, 9, 1)}:{dt.date(2027, 8, 31)}")
        if i % 20 == 7:
            categories.append("disabled")
        if i % 40 == 11:
            categories.append("low_income")
        name = rng.choice(_SURNAMES) + rng.choice(_GIVEN) + (rng.choice(_GIVEN) if i % 2 else "")
        phone = f"1{rng.choice('3578')}{rng.randrange(10**9):09d}"
        newcomer = i % 10 == 9
        scheme = "02" if newcomer else "01"
        lines.append(
            f"{name},{number},{phone},{scheme},{code}-employer-{i % 7},社区{i % 12},"
            f"{0 if newcomer else 1},{1 if newcomer else 0},{';'.join(categories)}"
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _department(code: str, kind: str, name: str) -> None:
    if not Department.objects.filter(code=code).exists():
        departments.department_create(code=code, kind=kind, name=name, actor="demo")


def _service_point(department: str, code: str, name: str, address: str) -> None:
    if not ServicePoint.objects.filter(code=code).exists():
        departments.service_point_create(
            department=department,
            code=code,
            name=name,
            address=address,
            hours="周一至周五 8:30-17:00",
            services=["apply", "issue", "loss", "replace", "ss_activate", "topup"],
            actor="demo",
        )


def _city(tenant, ctx, table: Table) -> None:
    cards.schemes_seed(actor="demo")
    cards.schemes_publish(actor="demo")
    _department(f"{tenant.code}-hrss", "hrss", f"{tenant.name_zh}人力资源和社会保障局")
    _department(f"{tenant.code}-civil", "civil_affairs", f"{tenant.name_zh}民政局")
    _service_point(
        f"{tenant.code}-hrss",
        f"{tenant.code}-center",
        f"{tenant.name_zh}市民卡服务中心",
        f"{tenant.name_zh}市民中心",
    )
    folder = Path(settings.DATA_DIR) / "demo-cards"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{tenant.code}-applications.csv"
    _csv(path, tenant.division_code, tenant.code)
    report = batch.cards_import(path=path, actor="demo", state=CardState.ACTIVE, batch=f"demo-{tenant.code}")
    main = list(Card.objects.filter(scheme__code="01").order_by("card_no")[:60])
    for card in main[:40]:
        accounts.account_open(card_no=card.card_no, actor="demo")
        accounts.account_topup(
            card_no=card.card_no, amount_fen=5000, idempotency_key=f"demo-topup-{card.card_no}", actor="demo"
        )
    accounts.subsidy_programme_save(
        code="elderly-allowance",
        name="高龄津贴",
        category="elderly",
        department=f"{tenant.code}-civil",
        items=[{"item": "高龄津贴", "amount_fen": 10000}, {"item": "公交出行补贴", "amount_fen": 3000}],
        actor="demo",
    )
    run = accounts.subsidy_run(
        programme_code="elderly-allowance", period="2026-11", on=dt.date(2026, 11, 1), actor="demo"
    )
    for card in main[50:53]:  # three cards lost: on the hotlist
        if Card.objects.get(pk=card.pk).state == CardState.ACTIVE:
            cards.card_report_lost(card_no=card.card_no, actor="demo")
    counts = {
        code: CardholderCategory.objects.filter(code=code).values("cardholder").distinct().count()
        for code in ("elderly", "student", "disabled")
    }
    table.add_row(
        tenant.code,
        str(Cardholder.objects.count()),
        str(Card.objects.count()),
        str(report.cards_created),
        str(counts["elderly"]),
        str(counts["student"]),
        str(counts["disabled"]),
        str(hotlist_version()),
        gettext("%(count)s paid") % {"count": run.payments},
    )


def scale_step(*, tenant, holders: int, actor: str) -> None:
    """``citycard tenant scale``: in one of the largest cities, the card schemes and ``holders`` cardholders
    with active cards through batch issuance (run in the tenant's schema). A city with cardholders already is
    left as it is."""
    cards.schemes_seed(actor=actor)
    cards.schemes_publish(actor=actor)
    if Cardholder.objects.exists():
        return
    folder = Path(settings.DATA_DIR) / "scale-cards"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{tenant.code}-applications.csv"
    _csv(path, tenant.division_code, tenant.code, holders)
    batch.cards_import(path=path, actor=actor, state=CardState.ACTIVE, batch=f"scale-{tenant.code}")


def _county_onboard(tenant) -> None:
    _department(f"{tenant.code}-hrss", "hrss", f"{tenant.name_zh}人力社保局")
    _department(f"{tenant.code}-transport", "transport", f"{tenant.name_zh}交通运输局")
    _service_point(
        f"{tenant.code}-hrss",
        f"{tenant.code}-window",
        f"{tenant.name_zh}市民卡服务窗口",
        f"{tenant.name_zh}行政服务中心",
    )


def _checklists(ctx) -> None:
    table = Table(title=gettext("County onboarding checklist"))
    for column in (
        gettext("county"),
        gettext("city schemes (read-only)"),
        gettext("done"),
        gettext("still missing"),
    ):
        table.add_column(column)
    for tenant in ctx.tenants.values():
        if tenant.kind != "county":
            continue
        with tenant_context(tenant):
            schemes = schemes_visible(tenant=tenant)
            items = departments.onboarding_publish(tenant=tenant, actor="demo")  # its city reads this
        missing = [i.label for i in items if not i.done]
        table.add_row(
            f"{tenant.code} ({tenant.clearing_tenant.code})",
            ", ".join(s["name_zh"] for s in schemes),
            f"{len(items) - len(missing)}/{len(items)}",
            ", ".join(str(m) for m in missing) or gettext("nothing"),
        )
    ctx.console.print(table)
    ctx.console.print(
        gettext(
            "Who did each step and what is missing: %(command)s (the city and its counties), or %(path)s on "
            "each site."
        )
        % {"command": "`citycard onboarding --tenant jiaxing`", "path": "/admin/departments/onboarding/"}
    )


def _wechat_topup(ctx, tenant) -> None:
    """A cardholder tops up 100.00 through the WeChat Pay sandbox (the signed notification arrives twice and
    credits once), and the sandbox's trade bill of the day is reconciled against the ledger."""
    card = Card.objects.filter(scheme__code="01", state=CardState.ACTIVE).order_by("card_no").first()
    accounts.account_open(card_no=card.card_no, actor="demo")
    result = drill.sandbox_drill(
        provider="wechat", card_no=card.card_no, amount_fen=10000, request_key=f"demo-wechat-{card.card_no}",
        actor="demo", stray_fen=STRAY_FEN,
    )  # fmt: skip
    line = gettext(
        "%(tenant)s: top-up %(order)s through the WeChat Pay sandbox: %(state)s (%(notifications)s "
        "notifications, credited once); card %(card)s balance %(balance)s"
    ) % {
        "tenant": tenant.code,
        "order": result.order.out_trade_no,
        "state": result.order.get_state_display(),
        "notifications": result.notifications,
        "card": card.card_no,
        "balance": yuan(result.balance_fen),
    }
    if result.statement:
        run = payments.statement_reconcile(
            channel_code=result.channel.code, day=beijing_now().date(), data=result.statement, actor="demo",
            file_name="wechat-tradebill.csv",
        )  # fmt: skip
        line += gettext(
            "; trade bill reconciled: %(lines)s lines, %(matched)s matched, %(differences)s differences"
        ) % {"lines": run.lines, "matched": run.matched, "differences": run.exceptions}
    ctx.console.print(line)
    if result.statement:
        _fees_and_suspense(ctx, run, card.card_no)
    ctx.console.print(
        gettext("Channel reconciliation: %(url)s (%(doc)s)")
        % {"url": ctx.url(tenant.code, "/payments/reconciliation/"), "doc": "docs/payments.md"}
    )


def _fees_and_suspense(ctx, run, card_no: str) -> None:
    """The reconciled trade bill's fees posted to the channel's fee expense, its 长款 held in suspense (挂账)
    and resolved: the payer called, the clerk matches it to the payer's card."""
    ctx.console.print(
        gettext(
            "Channel fees of the day %(fees)s posted to %(account)s (the provider keeps them from the payout)"
        )
        % {"fees": yuan(run.fees_posted_fen), "account": f"fee-expense:channel-{run.channel.code}"}
    )
    for item in payments_selectors.suspense_items(open_only=True).filter(difference__run=run):
        ctx.console.print(
            gettext(
                "长款 %(order)s %(amount)s: the provider took it for no order of the city; held in suspense "
                "(%(account)s)"
            )
            % {
                "order": item.out_trade_no,
                "amount": yuan(item.amount_fen),
                "account": f"suspense:channel-{run.channel.code}",
            }
        )
        item = payments.suspense_match(
            item_id=item.pk, card_no=card_no, note="付款人来电认领 (the payer called)", actor="demo"
        )
        ctx.console.print(
            gettext(
                "长款 %(order)s resolved: matched to card %(card)s (the payer called), suspense back to zero"
            )
            % {"order": item.out_trade_no, "card": item.card_no}
        )


def demo_step(ctx) -> None:
    table = Table(title=gettext("Cards per demo city (batch issuance; re-runs create nothing)"))
    for column in (
        gettext("tenant"),
        gettext("cardholders"),
        gettext("cards"),
        gettext("new this run"),
        gettext("elderly"),
        gettext("students"),
        gettext("disabled"),
        gettext("hotlist version"),
        gettext("subsidy"),
    ):
        table.add_column(column)
    for tenant in ctx.tenants.values():
        with tenant_context(tenant):
            if tenant.kind == "county":
                _county_onboard(tenant)
            else:
                _city(tenant, ctx, table)
    ctx.console.print(table)
    city = ctx.tenants.get("hangzhou") or next(t for t in ctx.tenants.values() if t.kind != "county")
    with tenant_context(city):
        _wechat_topup(ctx, city)
    ctx.facts.setdefault("reports", []).append(_checklists)  # after the terminals step registered theirs
    ctx.console.print(
        gettext(
            "Hotlist download (signed by a registered terminal: %(doc)s): %(request)s; "
            "cardholders at %(path)s on each tenant site (ID numbers and phones encrypted, shown masked)."
        )
        % {
            "request": f"GET {ctx.url('<tenant>', '/terminal/v1/hotlist')}[?since=N]",
            "path": "/admin/cards/",
            "doc": "docs/terminal-protocol.md",
        }
    )
