"""Demo step: in each demo city a school's student canteen (学生食堂, onboarded by the education
department) and a car park (onboarded by the city) become merchants; a student pays a meal with the card's
e-purse at the canteen's POS (the terminal kit's purchase flow: virtual card, PSAM, TAC, a signed upload), a
driver pays a parking fee from the online account by citizen code; yesterday (Beijing) is settled net of
fees, each statement is at /merchants/settlement/ and the day's payout file (代付文件) is written. Safe to
run again (a settled day stays settled)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext, pgettext
from django_tenants.utils import tenant_context
from rich.table import Table

from citycard.tenants.accounts import services as accounts
from citycard.tenants.accounts.models import LedgerAccount, PurseShadow
from citycard.tenants.cards.models import Card, CardholderCategory, CardState
from citycard.tenants.departments import services as departments
from citycard.tenants.departments.models import Department
from citycard.tenants.entitlements.acceptance import citizen_code_issue
from citycard.tenants.merchants import services as merchants
from citycard.tenants.merchants.models import Merchant, MerchantTerminal, Payment
from citycard.tenants.terminals.demo import _card_keys, _demo_key, _validator, validator_upload
from citycard.tenants.terminals.models import MERCHANT_SERVICE, Transaction
from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.card.virtual import CardProfile, VirtualCard
from citycard.terminal_kit.money import yuan
from citycard.terminal_kit.signing import public_key_bytes
from citycard.terminal_kit.tap import FixedFare

MEAL_FEN = 1250  # a canteen meal, ¥12.50
PARKING_FEN = 800  # two hours' parking, ¥8.00


def _outcomes() -> dict[str, str]:
    return {"approved": gettext("approved"), "declined": gettext("declined")}


def _merchants(tenant) -> tuple[Merchant, Merchant]:
    education = f"{tenant.code}-edu"
    if not Department.objects.filter(code=education).exists():
        departments.department_create(
            code=education, kind="education", name=f"{tenant.name_zh}教育局", actor="demo"
        )
    made = []
    for code, name, category, dept, means, bps, org in (
        (
            f"{tenant.code}-school-canteen",
            f"{tenant.name_zh}第一中学学生食堂",
            "5814",
            education,
            ["purse", "account", "code"],
            30,
            "MA0CANTEE",
        ),
        (
            f"{tenant.code}-parking",
            f"{tenant.name_zh}市民中心停车场",
            "7523",
            "",
            ["account", "code"],
            60,
            "MA0PARK88",
        ),
    ):
        merchant = Merchant.objects.filter(code=code).first() or merchants.merchant_onboard(
            code=code,
            name=name,
            licence_no=merchants.licence_no_build(division=tenant.division_code, organisation=org),
            category=category,
            settlement_bank="市民卡合作银行",
            settlement_account=f"62220{tenant.division_code}{len(made):08d}",
            fee_bps=bps,
            accepted_means=means,
            department=dept,
            actor="demo",
        )
        made.append(merchant)
    return made[0], made[1]


def _student_card() -> str | None:
    """A student's main card with an online account (the demo's batch issuance has students)."""
    students = CardholderCategory.objects.filter(code="student").values("cardholder_id")
    with_account = LedgerAccount.objects.exclude(card_no="").values("card_no")
    live = Card.objects.filter(scheme__code="01", state=CardState.ACTIVE, card_no__in=with_account)
    card = (
        live.filter(cardholder_id__in=students).order_by("card_no").first()
        or live.order_by("card_no").first()
    )
    return card.card_no if card else None


def _meal(tenant, canteen: Merchant, card_no: str, at: dt.datetime, day: dt.date) -> str:
    """The student's meal at the canteen's POS: the e-purse loaded from the online account (圈存) once, then
    a purchase through the terminal kit, uploaded as a signed batch of merchant taps."""
    terminal_id = f"{tenant.code[:3].upper()}-CANTEEN-POS-1"
    if not MerchantTerminal.objects.filter(terminal__terminal_id=terminal_id).exists():
        merchants.merchant_terminal_register(
            merchant_code=canteen.code,
            terminal_id=terminal_id,
            public_key=public_key_bytes(_demo_key(terminal_id)),
            location="食堂一楼",
            actor="demo",
        )
    accounts.purse_load(
        card_no=card_no, amount_fen=3000, idempotency_key=f"demo-load-{card_no}", actor="demo"
    )
    shadow = PurseShadow.objects.get(card_no=card_no)
    if shadow.balance_fen < MEAL_FEN:
        return gettext("e-purse too low")
    validator = _validator(tenant, terminal_id, 71, canteen.code, tenant.division_code)
    validator.fare, validator.service = FixedFare(MEAL_FEN), MERCHANT_SERVICE
    validator.transport.insert(
        VirtualCard(
            CardProfile(card_no=card_no),
            _card_keys(tenant.division_code),
            balance=shadow.balance_fen,
            # its chip taps so far (a ride paid by the citizen code, medium 04, moved no chip counter)
            offline_atc=Transaction.objects.filter(card_no=card_no).exclude(card_scheme="04").count(),
        )
    )
    validator.clock = lambda: at
    tap = validator.tap()
    validator_upload(validator, tenant=tenant, terminal_id=terminal_id)
    outcome = _outcomes().get(tap.outcome, tap.outcome)
    return f"{outcome} {yuan(tap.fare_fen)}" if tap.fare_fen else outcome


def _payout_file(day: dt.date) -> str:
    """The day's settlement run as the bank's batch-transfer file (代付文件), written under the data
    directory (the same bytes on every run); what to say of it."""
    payout = merchants.payout_file_build(day=day, actor="demo")
    folder = Path(settings.DATA_DIR) / "demo-payouts"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / payout.name
    path.write_text(payout.text, encoding="utf-8")
    return gettext(
        "Payout file %(path)s: %(count)s transfers to merchants, %(total)s net of fees (SHA-256 %(digest)s…)"
    ) % {"path": path, "count": payout.count, "total": yuan(payout.total_fen), "digest": payout.digest[:12]}


def demo_step(ctx) -> None:
    now = timezone.now().astimezone(BEIJING)
    day = now.date() - dt.timedelta(days=1)
    table = Table(
        title=gettext("Merchants: a canteen meal, a parking fee, settlement of %(day)s (Beijing)")
        % {"day": day.isoformat()}
    )
    for column in (
        gettext("tenant"),
        gettext("meal (e-purse at the POS)"),
        gettext("parking (citizen code)"),
        gettext("merchant"),
        pgettext("merchant settlement", "payments"),
        gettext("gross (yuan)"),
        pgettext("merchant settlement", "fee (yuan)"),
        gettext("net paid (yuan)"),
    ):
        table.add_column(column)
    payouts: list[str] = []
    for code, tenant in ctx.tenants.items():
        if tenant.kind == "county":
            continue
        with tenant_context(tenant):
            canteen, parking = _merchants(tenant)
            card_no = _student_card()
            if card_no is None:
                continue
            lunch = dt.datetime.combine(day, dt.time(12, 5), tzinfo=BEIJING)
            meal = _meal(tenant, canteen, card_no, lunch, day)
            payment_id = f"demo-parking-{day.isoformat()}"
            if not Payment.objects.filter(payment_id=payment_id).exists():
                leaving = lunch + dt.timedelta(minutes=40)  # the driver shows the code at the barrier
                merchants.merchant_pay(
                    merchant_code=parking.code,
                    citizen_code=citizen_code_issue(card_no=card_no, at=leaving),
                    amount_fen=PARKING_FEN,
                    payment_id=payment_id,
                    at=leaving,
                    actor="demo",
                )
            settled = merchants.merchants_settle_day(day=day, actor="demo")
            for n, s in enumerate(x for x in settled if x.merchant_id in (canteen.pk, parking.pk)):
                table.add_row(
                    code if n == 0 else "",
                    meal if n == 0 else "",
                    yuan(PARKING_FEN) if n == 0 else "",
                    s.merchant.name,
                    str(s.payments),
                    yuan(s.gross_fen),
                    yuan(s.fee_fen),
                    yuan(s.net_fen),
                )
            payouts.append(_payout_file(day))
    ctx.console.print(table)
    for line in payouts:
        ctx.console.print(line)
    ctx.console.print(
        gettext(
            "Statements: %(url)s (yuan; CSV in fen from each statement), or %(command)s; merchants at %(path)s."
        )
        % {
            "url": ctx.url("<tenant>", f"/merchants/settlement/?day={day.isoformat()}"),
            "command": "`citycard merchants --tenant hangzhou statement hangzhou-school-canteen "
            f"--day {day.isoformat()}`",
            "path": "/admin/merchants/",
        }
    )
