"""Demo step: in each demo city the credit rules are set (for the demo every active card qualifies), the
student's card gets a credit line, a parking fee is paid on credit at a car park that accepts it on the last
day of last month (Beijing), last month's bill is generated, the card is bound to the WeChat Pay sandbox's
entrusted collection (委托代扣) and, on the bill's due date, automatic repayment collects the bill through it
(the sandbox pays and notifies; the collection is credited and moved on to the line). In Hangzhou the student
then rides a bus by citizen code (电子市民码乘车): the terminal kit's validator verifies the code offline and
queues the ride, the upload is verified, and the fare is deferred onto the student's credit line at once; the
same code shown again is refused at the validator. Safe to run again (the payment, the bill, the binding and
the collection are idempotent; each run's code ride is a new ride with a fresh code)."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone
from django.utils.translation import gettext
from django_tenants.utils import tenant_context
from rich.table import Table

from citycard.tenants.credit import selectors, services
from citycard.tenants.credit.models import CreditLine
from citycard.tenants.entitlements.acceptance import citizen_code_issue
from citycard.tenants.merchants import services as merchants
from citycard.tenants.merchants.demo import _student_card
from citycard.tenants.merchants.models import Merchant
from citycard.tenants.payments import services as payments
from citycard.tenants.payments.drill import SANDBOX_APP, SANDBOX_MERCHANT, sandbox_channel_configure
from citycard.tenants.payments.models import ChannelBinding
from citycard.tenants.payments.sandboxes import NotifyInbox, Sandbox
from citycard.tenants.terminals.demo import code_issuers_synced, code_rides_upload
from citycard.tenants.terminals.models import ReviewFlag
from citycard.tenants.terminals.verify import batches_verify_all
from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.money import yuan

PARKING_FEN = 1500  # an evening's parking, ¥15.00
CHANNEL = "sandbox-wechat"  # the channel the cards' top-up step configured; bound here for collections


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
        title=gettext(
            "Credit pay-later: a parking fee on credit in %(month)s, the month's bill collected automatically"
            " through the bound channel"
        )
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
    inbox = NotifyInbox()
    sandbox = Sandbox.start("wechat", merchant_id=SANDBOX_MERCHANT["wechat"], app_id=SANDBOX_APP["wechat"])
    try:
        _cities(ctx, table, sandbox, inbox, last_day=last_day, month=month)
    finally:
        sandbox.stop()
        inbox.stop()
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


def _autorepay(ctx, sandbox: Sandbox, inbox: NotifyInbox, *, card_no: str, due_on: dt.date) -> None:
    """The card bound to the WeChat Pay channel (the city's channel pointed at this run's sandbox), then the
    automatic repayment run of the bill's due date: it opens the collection, the sandbox collects under the
    agreement and notifies, the notification credits the online account, and the next run moves it to the
    line."""
    sandbox_channel_configure(
        sandbox, code=CHANNEL, name="wechat sandbox", notify_url=f"{inbox.url}/{CHANNEL}", actor="demo"
    )
    if not ChannelBinding.objects.filter(card_no=card_no, channel__code=CHANNEL, active=True).exists():
        payments.binding_create(
            channel_code=CHANNEL, card_no=card_no, agreement_no=f"demo-wx-{card_no}", actor="demo"
        )
    opened = services.credit_autorepay_run(on=due_on, actor="demo")["opened"]
    sandbox.settle()
    for headers, body in inbox.drain():
        payments.topup_notification_receive(channel_code=CHANNEL, headers=headers, body=body)
    applied = services.credit_autorepay_run(on=due_on, actor="demo")["applied"]
    ctx.console.print(
        gettext(
            "%(card)s: automatic repayment on the due date %(due_on)s through the bound WeChat Pay channel:"
            " %(opened)s collection opened, %(applied)s applied to the bill"
        )
        % {"card": card_no, "due_on": due_on.isoformat(), "opened": opened, "applied": applied}
    )


def _cities(
    ctx, table: Table, sandbox: Sandbox, inbox: NotifyInbox, *, last_day: dt.date, month: str
) -> None:
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
                _autorepay(ctx, sandbox, inbox, card_no=card_no, due_on=bill.due_on)
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
