"""Demo step: in each demo city the credit rules are set (for the demo every active card qualifies), the
student's card gets a credit line, a parking fee is paid on credit at a car park that accepts it on the last
day of last month (Beijing), last month's bill is generated and repaid from the online account. In Hangzhou
the student then rides a bus by citizen code (电子市民码乘车): the terminal kit's validator verifies the code
offline and queues the ride, the upload is verified, and the fare is deferred onto the student's credit line
at once; the same code shown again is refused at the validator. Safe to run again (the payment, the bill and
the repayment are idempotent; each run's code ride is a new ride with a fresh code)."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone
from django.utils.translation import gettext
from django_tenants.utils import tenant_context
from rich.table import Table

from citycard.tenants.accounts import services as accounts
from citycard.tenants.credit import selectors, services
from citycard.tenants.credit.models import CreditLine
from citycard.tenants.entitlements.acceptance import citizen_code_issue
from citycard.tenants.merchants import services as merchants
from citycard.tenants.merchants.demo import _student_card
from citycard.tenants.merchants.models import Merchant
from citycard.tenants.terminals.demo import code_issuers_synced, code_rides_upload
from citycard.tenants.terminals.models import ReviewFlag
from citycard.tenants.terminals.verify import batches_verify_all
from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.money import yuan

PARKING_FEN = 1500  # an evening's parking, ¥15.00


def _car_park(tenant) -> Merchant:
    code = f"{tenant.code}-parking-credit"
    return Merchant.objects.filter(code=code).first() or merchants.merchant_onboard(
        code=code,
        name=f"{tenant.name_zh}南湖停车场",
        licence_no=merchants.licence_no_build(division=tenant.division_code, organisation="MA0PARK99"),
        category="7523",
        settlement_bank="市民卡合作银行",
        settlement_account=f"62221{tenant.division_code}00000099",
        fee_bps=60,
        accepted_means=["account", "credit"],
        actor="demo",
    )


def demo_step(ctx) -> None:
    today = timezone.now().astimezone(BEIJING).date()
    last_day = today.replace(day=1) - dt.timedelta(days=1)
    month = last_day.strftime("%Y-%m")
    table = Table(
        title=gettext("Credit pay-later: a parking fee on credit in %(month)s, the month's bill repaid")
        % {"month": month}
    )
    for column in (
        gettext("tenant"),
        gettext("card"),
        gettext("limit (yuan)"),
        gettext("parking on credit (yuan)"),
        gettext("bill (yuan)"),
        gettext("due on"),
        gettext("repaid (yuan)"),
        gettext("owed now (yuan)"),
    ):
        table.add_column(column)
    for code, tenant in ctx.tenants.items():
        if tenant.kind == "county":
            continue
        with tenant_context(tenant):
            services.credit_rules_set(  # every active card qualifies in the demo, students too
                actor="demo",
                limit_fen=50_000,
                active_months=0,
                require_insured=False,
                birth_decade_min=1900,
                birth_decade_max=2020,
                schemes=[],
                due_day=20,
            )
            card_no = _student_card()
            if card_no is None:
                continue
            if not CreditLine.objects.filter(card_no=card_no).exists():
                services.credit_grant(card_no=card_no, actor="demo")
            line = selectors.line_of_card(card_no=card_no)
            park = _car_park(tenant)
            evening = dt.datetime.combine(last_day, dt.time(19, 30), tzinfo=BEIJING)
            services.credit_pay(
                merchant_code=park.code,
                card_no=card_no,
                amount_fen=PARKING_FEN,
                payment_id=f"demo-credit-parking-{month}",
                actor="demo",
                at=evening,
            )
            services.credit_bills_generate(month=month, actor="demo")
            bill = selectors.bill_of(card_no=card_no, month=month)
            if bill is not None and bill.outstanding_fen:
                accounts.account_topup(
                    card_no=card_no,
                    amount_fen=bill.outstanding_fen,
                    idempotency_key=f"demo-credit-topup-{month}-{card_no}",
                    actor="demo",
                )
                services.credit_repay(
                    card_no=card_no,
                    amount_fen=bill.outstanding_fen,
                    key=f"demo-repay-{month}-{card_no}",
                    actor="demo",
                )
                bill.refresh_from_db()
            table.add_row(
                code,
                card_no,
                yuan(line.limit_fen),
                yuan(PARKING_FEN),
                yuan(bill.full_due_fen) if bill else "—",
                str(bill.due_on) if bill else "—",
                yuan(bill.paid_fen) if bill else "—",
                yuan(selectors.owed_fen(line)),
            )
    ctx.console.print(table)
    city = ctx.tenants.get("hangzhou")
    if city is not None:
        with tenant_context(city):
            card_no = _student_card()
            if card_no is not None:
                _code_ride(ctx, city, card_no)
    ctx.console.print(
        gettext("Bills: %(command)s; lines, items, bills and repayments at %(path)s.")
        % {
            "command": f"`citycard credit --tenant hangzhou bill --month {month} --card <card>`",
            "path": "/admin/credit/",
        }
    )


def ride_outcome(result) -> str:
    """A validator's answer to a citizen code as the demo reads it: approved, or refused with why."""
    if result.outcome == "approved":
        return gettext("taken at the validator")
    return gettext("refused (%(why)s)") % {"why": result.refusal or result.outcome}


def _code_ride(ctx, tenant, card_no: str) -> None:
    """The student shows the citizen code at the city's bus 11 (its validator HAN-BUS-001 of the terminals'
    step): taken through the terminal kit's code scanner, shown again at once (refused: spent), uploaded,
    verified (the code checked again) and its fare booked (``online_fares_book``) onto the credit line."""
    now = timezone.now().astimezone(BEIJING).replace(microsecond=0)
    terminal_id = f"{tenant.code[:3].upper()}-BUS-001"
    code = citizen_code_issue(card_no=card_no, at=now)
    rides, upload = code_rides_upload(
        tenant,
        terminal_id,
        1,
        "11",
        [(code, now), (code, now + dt.timedelta(seconds=2))],
        code_issuers_synced(tenant, []),
        now + dt.timedelta(seconds=5),
    )
    verified = batches_verify_all(tenant=tenant)
    booked = services.online_fares_book(actor="demo")
    ride, again = rides
    ctx.console.print(
        gettext(
            "%(tenant)s citizen-code ride (电子市民码乘车) at %(terminal)s: card %(card)s, %(fare)s %(outcome)s; "
            "the same code shown again: %(again)s"
        )
        % {
            "tenant": tenant.code,
            "terminal": terminal_id,
            "card": card_no,
            "fare": yuan(ride.fare_fen),
            "outcome": ride_outcome(ride),
            "again": ride_outcome(again),
        }
    )
    ctx.console.print(
        gettext(
            "  uploaded: %(accepted)s accepted; verification stage (the code checked again): %(flags)s flags; "
            "booked: %(deferred)s deferred onto the credit line, %(charged)s charged to the online account"
        )
        % {
            "accepted": upload.accepted if upload else 0,
            "flags": verified.flags,
            "deferred": booked["deferred"],
            "charged": booked["charged"],
        }
    )
    held = ReviewFlag.objects.filter(code__startswith="code_", resolved_at__isnull=True).count()
    ctx.console.print(
        gettext(
            "  Code rides the verification stage flags are held, never charged, until a clerk decides: %(list)s, "
            "%(charge)s (复核后扣费) or %(waive)s (免收); %(held)s waiting here."
        )
        % {
            "list": f"`citycard credit --tenant {tenant.code} code-flags`",
            "charge": "code-charge FLAG",
            "waive": "code-waive FLAG --note WHY",
            "held": held,
        }
    )
