"""Demo step: a day of roaming in both networks through terminals and ingestion, then its clearing cycle.

Jiaxing cards ride Hangzhou and Shanghai buses, Hangzhou cards ride in Jiaxing, Dongguan and Shenzhen
cards ride in each other's city; among them a card reported lost before it was tapped and a card its
issuer never issued. A Jiaxing card pays a meal at Hangzhou's school canteen with its e-purse (异地商户消费):
the merchant-payment cycle clears it, and both cities' books show it (Hangzhou's receivable from Jiaxing,
Jiaxing's payable to Hangzhou). The day cleared is two days ago (Asia/Shanghai), whose cut-off has passed whenever
the demo runs; taps go through the terminal_kit validator (real TACs under each issuer's card key from the vault),
the signed upload, the acquirer's outbox, collection, issuer validation, netting and settlement, run as
Celery tasks on real worker processes the step starts (interop.workers; the same task functions in this
process, with a message, if no worker can start). Re-running finds the cycles settled and only reports
them.
"""

from __future__ import annotations

import datetime as dt
import time

from django.utils import timezone
from django.utils.translation import gettext
from django_tenants.utils import tenant_context
from rich.table import Table

from citycard.interop import tasks
from citycard.interop.entitlements_demo import entitlements_demo
from citycard.interop.models import CycleState, RecordStatus
from citycard.interop.services import agreements, cycles
from citycard.interop.workers import WorkersUnavailable, clearing_workers, run_on_workers
from citycard.platform.models import Tenant
from citycard.platform.reasons import reason_text
from citycard.tenants.accounts.models import LedgerAccount
from citycard.tenants.cards.models import Card
from citycard.tenants.cards.pii import id_number_build
from citycard.tenants.cards.selectors import cardholder_by_id_number
from citycard.tenants.cards.services import (
    card_activate,
    card_apply,
    card_issue,
    card_produce,
    card_report_lost,
    cardholder_register,
    schemes_seed,
)
from citycard.tenants.credit import services as credit
from citycard.tenants.credit.demo import ride_outcome
from citycard.tenants.credit.models import CreditItem, RoamingFare
from citycard.tenants.entitlements.acceptance import citizen_code_issue
from citycard.tenants.medical import services as medical
from citycard.tenants.merchants import services as merchants
from citycard.tenants.merchants.demo import _student_card
from citycard.tenants.merchants.models import MerchantTerminal
from citycard.tenants.settlement.models import CycleSettlement
from citycard.tenants.settlement.services import differences_settle_late
from citycard.tenants.terminals import tasks as terminal_tasks
from citycard.tenants.terminals.demo import (
    _card_keys,
    _demo_key,
    _validator,
    code_issuers_synced,
    code_rides_upload,
    validator_upload,
)
from citycard.tenants.terminals.models import MERCHANT_SERVICE, Terminal
from citycard.tenants.terminals.services import terminal_register
from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.card.virtual import CardProfile, VirtualCard
from citycard.terminal_kit.cardno import card_number_build
from citycard.terminal_kit.money import yuan
from citycard.terminal_kit.signing import public_key_bytes
from citycard.terminal_kit.tap import FixedFare

# (network, acquirer, issuer, riders): whose cards ride whose buses.
FLOWS = [
    ("yrd", "hangzhou", "jiaxing", 5),
    ("yrd", "shanghai", "jiaxing", 3),
    ("yrd", "jiaxing", "hangzhou", 4),
    ("gba", "shenzhen", "dongguan", 4),
    ("gba", "dongguan", "shenzhen", 3),
]
ROAMING_MEAL_FEN = 1380  # a Jiaxing card's meal at Hangzhou's school canteen, ¥13.80


def _agreements(day: dt.date) -> None:
    for network in ("yrd", "gba"):
        agreements.agreement_set(
            network_code=network, service="medical", valid_from=dt.date(2020, 1, 1), actor="demo"
        )
        agreements.agreement_set(
            network_code=network,
            service="transit",
            valid_from=dt.date(2020, 1, 1),
            issuer_fee_bps=50,
            network_fee_bps=10,
            cut_off=dt.time(4, 0),
            # Version 1; the members' fare rules, published in the step before, are republished with its
            # visitor policy (yrd: visitors' home categories honoured).
            visitor_policy="home_categories" if network == "yrd" else "local_discounts",
            actor="demo",
        )
    agreements.agreement_set(
        network_code="yrd",
        service="merchant",
        valid_from=dt.date(2020, 1, 1),
        issuer_fee_bps=30,
        network_fee_bps=5,
        cut_off=dt.time(4, 0),
        actor="demo",
    )


def _issue(issuer: Tenant, count: int, day: dt.date, *, registered: int = 0) -> list[str]:
    """Active transit cards (城市通卡, scheme 03) of the issuer, issued well before the day; the first
    ``registered`` of them to a registered cardholder (实名: only such a card can be reported lost)."""
    issued_at = dt.datetime.combine(day - dt.timedelta(days=30), dt.time(10), tzinfo=BEIJING)
    numbers = []
    with tenant_context(issuer):
        schemes_seed(actor="demo")
        for i in range(count):
            holder = None
            if i < registered:
                id_number = id_number_build(
                    division=issuer.division_code,
                    birth_date=dt.date(1980, 5, 1),
                    sequence=day.toordinal() % 1000,
                )
                found = cardholder_by_id_number(id_number=id_number)
                holder = found or cardholder_register(name="通勤者", id_number=id_number, actor="demo")
            card = card_apply(
                scheme_code="03",
                cardholder_id=holder.pk if holder else None,
                actor="demo",
                source="demo-roaming",
                at=issued_at,
            )
            for step in (card_produce, card_issue, card_activate):
                step(card_no=card.card_no, actor="demo", at=issued_at)
            numbers.append(card.card_no)
    return numbers


def _ride(acquirer: Tenant, card_nos: list[str], day: dt.date, hour: int, n: int) -> dict:
    """The acquirer's bus takes one tap per card at the day's ``hour`` and uploads the batch."""
    terminal_id = f"{acquirer.code[:3].upper()}-RMG-{n:03d}"
    with tenant_context(acquirer):
        if not Terminal.objects.filter(terminal_id=terminal_id).exists():
            terminal_register(
                terminal_id=terminal_id,
                operator=f"{acquirer.name_zh}公交",
                department="transport",
                service="bus",
                route="K1",
                public_key=public_key_bytes(_demo_key(terminal_id)),
                actor="demo",
            )
        validator = _validator(acquirer, terminal_id, 900 + n, "K1", acquirer.division_code)
        for i, card_no in enumerate(card_nos):
            card = VirtualCard(
                CardProfile(card_no=card_no), _card_keys(card_no[:6]), balance=5_000, offline_atc=i
            )
            validator.transport.insert(card)
            validator.clock = lambda i=i: dt.datetime.combine(day, dt.time(hour, 5 * i), tzinfo=BEIJING)
            validator.tap()
        upload = validator_upload(validator, tenant=acquirer, terminal_id=terminal_id, rule_version=0)
    return {"accepted": upload.result.accepted if upload else 0}


def _day_of_roaming(ctx, day: dt.date) -> None:
    tenants = {
        t.code: t for t in Tenant.objects.filter(code__in={f[1] for f in FLOWS} | {f[2] for f in FLOWS})
    }
    for n, (_network, acquirer, issuer, riders) in enumerate(FLOWS, start=1):
        card_nos = _issue(tenants[issuer], riders, day, registered=1 if n == 1 else 0)
        if n == 1:
            # A bad tap: the first rider reported the card lost at 07:00 and it was tapped at 08:00.
            with tenant_context(tenants[issuer]):
                card_report_lost(
                    card_no=card_nos[0],
                    actor="demo",
                    at=dt.datetime.combine(day, dt.time(7), tzinfo=BEIJING),
                )
            # Another: a card number the issuer never issued (a forged or test card).
            with tenant_context(tenants[issuer]):
                serial = 9_000_000 + Card.objects.count()
            card_nos.append(
                card_number_build(division=tenants[issuer].division_code, scheme="03", serial=serial)
            )
        _ride(tenants[acquirer], card_nos, day, 8 + n, n)
    _code_ride_roaming(ctx, tenants["hangzhou"], tenants["jiaxing"], day)


def _code_ride_roaming(ctx, acquirer: Tenant, issuer: Tenant, day: dt.date) -> None:
    """A Jiaxing student rides Hangzhou's bus K1 by citizen code on the day cleared (异地扫码乘车): the code
    its city signed, verified offline by Hangzhou's validator with the Jiaxing keys a synced terminal holds,
    queued and uploaded as any code ride; Hangzhou books nothing for it (not its cardholder): its clearing
    record goes to Jiaxing with the day's cycle."""
    at = dt.datetime.combine(day, dt.time(9, 40), tzinfo=BEIJING)
    with tenant_context(issuer):
        card_no = _student_card()
        if card_no is None:
            return
        code = citizen_code_issue(card_no=card_no, at=at)
    with tenant_context(acquirer):
        (ride,), upload = code_rides_upload(
            acquirer,
            f"{acquirer.code[:3].upper()}-RMG-001",
            901,
            "K1",
            [(code, at)],
            code_issuers_synced(acquirer, [issuer]),
            timezone.now(),
        )
    ctx.console.print(
        gettext(
            "%(acquirer)s citizen-code ride of a %(issuer)s card (异地扫码乘车) on %(day)s: card %(card)s, "
            "%(fare)s %(outcome)s, uploaded (%(accepted)s accepted); its clearing record goes to %(issuer)s"
        )
        % {
            "acquirer": acquirer.code,
            "issuer": issuer.code,
            "day": day.isoformat(),
            "card": card_no,
            "fare": yuan(ride.fare_fen),
            "outcome": ride_outcome(ride),
            "accepted": upload.accepted if upload else 0,
        }
    )


def _code_fares_booked(ctx) -> None:
    """After the cycle: the issuer's validation accepted the roaming code ride and books it against its
    cardholder (``credit.online_fares_book``: deferred onto the credit line, else the online account; owed to
    the acquiring city through the cycle's settlement)."""
    issuer = Tenant.objects.get(code="jiaxing")
    with tenant_context(issuer):
        credit.online_fares_book(actor="demo")
        # booked after its cycle's file came: settled on the ledger now (the beat task does it every 5 min)
        differences_settle_late(actor="demo")
        for fare in RoamingFare.objects.filter(acquirer="hangzhou").order_by("tapped_at")[:3]:
            deferred = CreditItem.objects.filter(payment_id=f"roam:{fare.record_id}").exists()
            ctx.console.print(
                gettext(
                    "%(issuer)s: card %(card)s's citizen-code ride in %(acquirer)s (%(amount)s), clearing record "
                    "%(record)s accepted by its validation, booked against the cardholder: %(how)s"
                )
                % {
                    "issuer": issuer.code,
                    "card": fare.card_no,
                    "acquirer": fare.acquirer,
                    "amount": yuan(fare.amount_fen),
                    "record": fare.record_id,
                    "how": (
                        gettext("deferred onto the credit line")
                        if deferred
                        else gettext("charged to the online account")
                    )
                    if fare.booked_at
                    else gettext("not yet (nothing to pay it from)"),
                }
            )


def _merchant_roaming(day: dt.date) -> bool:
    """A Jiaxing card's meal at Hangzhou's school canteen (onboarded by the merchants' step): an e-purse
    purchase through the terminal kit at the canteen's POS, uploaded, booked to the canteen from Hangzhou's
    interop receivable, and settled to it on the day; the merchant-payment cycle clears it. False: the
    canteen or its POS is not there (the merchants' step did not run)."""
    hangzhou, jiaxing = Tenant.objects.get(code="hangzhou"), Tenant.objects.get(code="jiaxing")
    with tenant_context(hangzhou):
        link = (
            MerchantTerminal.objects.select_related("merchant", "terminal")
            .filter(merchant__code="hangzhou-school-canteen")
            .first()
        )
    if link is None:
        return False
    card_no = _issue(jiaxing, 1, day)[0]
    with tenant_context(hangzhou):
        terminal_id = link.terminal.terminal_id
        validator = _validator(hangzhou, terminal_id, 71, link.merchant.code, hangzhou.division_code)
        validator.fare, validator.service = FixedFare(ROAMING_MEAL_FEN), MERCHANT_SERVICE
        validator.transport.insert(
            VirtualCard(CardProfile(card_no=card_no), _card_keys(card_no[:6]), balance=5_000)
        )
        validator.clock = lambda: dt.datetime.combine(day, dt.time(12, 10), tzinfo=BEIJING)
        validator.tap()
        validator_upload(validator, tenant=hangzhou, terminal_id=terminal_id)
        merchants.merchants_settle_day(day=day, actor="demo")  # books the tap, pays the canteen
    return True


def _merchant_books(ctx, label: str) -> None:
    """Both sides' books of the roaming meal, after the cycle: the acquirer's receivable and the issuer's
    payable, settled to zero by the cycle's settlement on each city's ledger (what moved to each settlement
    bank account), and the fees the settlement booked (each city's ledger, in its own schema)."""
    hangzhou, jiaxing = Tenant.objects.get(code="hangzhou"), Tenant.objects.get(code="jiaxing")
    with tenant_context(hangzhou):
        receivable = LedgerAccount.objects.filter(code="interop:jiaxing").first()
        received = CycleSettlement.objects.filter(cycle=label).first()
    with tenant_context(jiaxing):
        payable = LedgerAccount.objects.filter(code="interop:hangzhou").first()
        paid = CycleSettlement.objects.filter(cycle=label).first()
    with tenant_context(hangzhou):
        expense = LedgerAccount.objects.filter(code="fee-expense:interchange").first()
    with tenant_context(jiaxing):
        income = LedgerAccount.objects.filter(code="fee:interchange").first()
    ctx.console.print(
        gettext(
            "Roaming merchant payment: a Jiaxing card's meal at Hangzhou's school canteen, settled by the"
            " merchant-payment cycle on both ledgers: Hangzhou received %(received)s into its settlement bank"
            " account, Jiaxing paid %(paid)s from its own; left on the interop accounts: Hangzhou's receivable"
            " from Jiaxing %(receivable)s, Jiaxing's payable to Hangzhou %(payable)s."
        )
        % {
            "received": yuan(received.settled_fen) if received else yuan(0),
            "paid": yuan(-paid.settled_fen) if paid else yuan(0),
            "receivable": yuan(-receivable.balance_fen) if receivable else yuan(0),
            "payable": yuan(payable.balance_fen) if payable else yuan(0),
        }
    )
    ctx.console.print(
        gettext(
            "Fees of the merchant-payment cycle, booked at its settlement: Jiaxing (issuer) earned %(income)s"
            " of interchange; Hangzhou (acquirer) paid %(expense)s of issuer's and network fees"
        )
        % {
            "income": yuan(income.balance_fen) if income else yuan(0),
            "expense": yuan(-expense.balance_fen) if expense else yuan(0),
        }
    )


def _medical_visits(treated: dt.date) -> None:
    """A Dongguan insured person treated twice in Shenzhen (异地就医), priced with Shenzhen's catalogue,
    adjudicated under Dongguan's policy."""
    shenzhen, dongguan = Tenant.objects.get(code="shenzhen"), Tenant.objects.get(code="dongguan")
    with tenant_context(shenzhen):
        for code, name, category, price, coverage, self_pay in (
            ("D001", "阿莫西林胶囊", "drug", 2400, "A", 0),
            ("D002", "头孢克肟片", "drug", 5800, "B", 1000),
            ("T001", "CT 检查", "treatment", 30000, "A", 0),
            ("M001", "进口耗材", "material", 8000, "C", 0),
        ):
            medical.catalogue_item_save(
                code=code,
                name=name,
                category=category,
                unit_price_fen=price,
                coverage=coverage,
                self_pay_bps=self_pay,
                actor="demo",
            )
    with tenant_context(dongguan):
        medical.policy_set(
            year=treated.year,
            deductible_fen=20000,
            ratios_bps={"drug": 8000, "treatment": 9000},
            annual_cap_fen=5_000_000,
            actor="demo",
        )
    patient = _issue(dongguan, 1, treated)[0]
    for n, items in enumerate(([("D001", 3), ("T001", 1)], [("D002", 2), ("T001", 1), ("M001", 1)]), start=1):
        with tenant_context(shenzhen):
            medical.claim_submit(
                claim_no=f"{treated.isoformat()}-{n}",
                card_no=patient,
                department="深圳市人民医院",
                treated_at=dt.datetime.combine(treated, dt.time(9 + n), tzinfo=BEIJING),
                items=items,
                actor="demo",
            )


def demo_step(ctx) -> None:
    today = timezone.now().astimezone(BEIJING).date()
    day = today - dt.timedelta(days=2)
    treated = day.replace(day=1) - dt.timedelta(days=2)  # last month: its medical cycle has cut off
    _agreements(day)
    now = timezone.now()
    cycle = cycles.cycle_get_or_create(network_code="yrd", service="transit", business_date=day)
    if cycle.state == CycleState.OPEN:
        _day_of_roaming(ctx, day)
    merchant_cycle = cycles.cycle_get_or_create(network_code="yrd", service="merchant", business_date=day)
    roaming_meal = merchant_cycle.state != CycleState.OPEN or _merchant_roaming(day)
    medical_cycle = cycles.cycle_get_or_create(network_code="gba", service="medical", business_date=treated)
    if medical_cycle.state == CycleState.OPEN:
        _medical_visits(treated)
    jobs = [("yrd", "transit", day), ("gba", "transit", day)]
    if roaming_meal:
        jobs.append(("yrd", "merchant", day))
    if now >= medical_cycle.cut_off_at:
        jobs.append(("gba", "medical", treated))
    for summary in _clear(ctx, jobs, now):
        _report(ctx, summary)
    _code_fares_booked(ctx)
    if roaming_meal:
        _merchant_books(ctx, merchant_cycle.label)
    entitlements_demo(ctx)
    ctx.console.print(
        gettext(
            "Clearing: %(command)s; the clearing console shows cycles, positions, the matrix and exceptions "
            "(%(url)s)."
        )
        % {
            "command": f"`citycard clearing status --network yrd --service transit --date {day.isoformat()}`",
            "url": ctx.url(None, "/console/"),
        }
    )
    ctx.console.print(
        gettext(
            "Agreements: %(show)s lists the dated versions; %(set)s adds one (a new %(option)s republishes the "
            "members' fare rules)."
        )
        % {
            "show": "`citycard agreement show --network yrd`",
            "set": "`citycard agreement set --network yrd --effective YYYY-MM-DD --issuer-fee-bps 60`",
            "option": "--visitor-policy",
        }
    )
    ctx.console.print(
        gettext("Medical roaming (%(doc)s): %(commands)s; %(path)s on %(sites)s.")
        % {
            "commands": "`citycard clearing status --network gba --service medical`; "
            "`citycard medical --tenant shenzhen claims`, `citycard medical --tenant dongguan policy list`",
            "path": "/admin/medical/",
            "doc": "docs/medical.md",
            "sites": f"{ctx.url('dongguan')} {ctx.url('shenzhen')}",
        }
    )


def _clear(ctx, jobs: list[tuple[str, str, dt.date]], now: dt.datetime) -> list[dict]:
    """The cycles through real Celery workers: one worker with two pool processes on the embedded broker
    (or CELERY_BROKER_URL); the outboxes are collected first, then the cycles of different networks run
    side by side (one network's cycles one after another). If no worker can start the same tasks run in
    this process, and the demo says so."""
    verify = terminal_tasks.batches_verify_all.s()  # the day's uploads checked before clearing
    collect = tasks.outboxes_collect.s(now.isoformat())
    rounds: list[list[tuple[str, str, dt.date]]] = []
    for job in jobs:
        free = next((r for r in rounds if all(other[0] != job[0] for other in r)), None)
        if free is None:
            rounds.append(free := [])
        free.append(job)
    started = time.monotonic()
    try:
        with clearing_workers(concurrency=2) as workers:
            verified = run_on_workers(workers, [verify])[0]
            run_on_workers(workers, [collect])
            done: dict[tuple[str, str, dt.date], dict] = {}
            for side_by_side in rounds:
                signatures = [
                    tasks.cycle_process.s(n, s, d.isoformat(), now.isoformat()) for n, s, d in side_by_side
                ]
                done.update(zip(side_by_side, run_on_workers(workers, signatures), strict=True))
            summaries = [done[job] for job in jobs]
            pid = workers.process.pid
        ctx.console.print(
            gettext(
                "Clearing ran on real Celery workers (worker pid %(pid)s, %(processes)s pool processes, queue "
                "%(queue)s): the verification stage (%(verified)s), then %(cycles)s cycles in %(seconds).1f s"
            )
            % {
                "pid": pid,
                "processes": workers.concurrency,
                "queue": workers.queue,
                "verified": _verified(verified),
                "cycles": len(jobs),
                "seconds": time.monotonic() - started,
            }
        )
        return summaries
    except WorkersUnavailable as exc:
        ctx.console.print(
            "[yellow]"
            + gettext(
                "No Celery worker available (%(error)s); running the clearing tasks in this process instead."
            )
            % {"error": exc}
            + "[/yellow]"
        )
    ctx.console.print(
        gettext("Verification stage: %(done)s") % {"done": _verified(terminal_tasks.batches_verify_all.run())}
    )
    tasks.outboxes_collect.run(now.isoformat())
    return [tasks.cycle_process.run(n, s, d.isoformat(), now.isoformat()) for n, s, d in jobs]


def _verified(done: dict) -> str:
    taps = sum(v["taps"] for v in done.values())
    flags = sum(v["flags"] for v in done.values())
    return gettext("%(taps)s taps of %(tenants)s tenants checked, %(flags)s flags") % {
        "taps": taps,
        "tenants": len(done),
        "flags": flags,
    }


def _choice(choices, code: str) -> str:
    """A state or status as a clerk reads it, the code beside it (已结算 (settled))."""
    try:
        return f"{choices(code).label} ({code})"
    except ValueError:
        return code


def _report(ctx, summary: dict) -> None:
    console = ctx.console
    records = ", ".join(
        f"{_choice(RecordStatus, k)} {v['records']}" for k, v in sorted(summary["records"].items())
    )
    rejected = ", ".join(
        f"{reason_text(k)} {v}" for k, v in sorted(summary["rejected_by_reason"].items())
    ) or gettext("none")
    console.print(
        gettext(
            "[bold]Clearing cycle %(cycle)s[/bold]: %(state)s — records: %(records)s; exceptions: %(exceptions)s"
        )
        % {
            "cycle": summary["cycle"],
            "state": _choice(CycleState, summary["state"]),
            "records": records,
            "exceptions": rejected,
        }
    )
    positions = Table(title=gettext("Net positions %(cycle)s") % {"cycle": summary["cycle"]})
    for col in (
        gettext("participant"),
        gettext("receivable (yuan)"),
        gettext("payable (yuan)"),
        gettext("net (yuan)"),
    ):
        positions.add_column(col, justify="right")
    for row in summary["positions"]:
        positions.add_row(
            row["participant"], yuan(row["receivable_fen"]), yuan(row["payable_fen"]), yuan(row["net_fen"])
        )
    positions.add_row("Σ", "", "", yuan(sum(r["net_fen"] for r in summary["positions"])))
    console.print(positions)
    instructions = Table(title=gettext("Settlement instructions %(cycle)s") % {"cycle": summary["cycle"]})
    for col in (gettext("payer"), gettext("payee"), gettext("amount (yuan)"), gettext("value date")):
        instructions.add_column(col)
    for row in summary["instructions"]:
        instructions.add_row(row["payer"], row["payee"], yuan(row["amount_fen"]), str(row["value_date"]))
    console.print(instructions)
