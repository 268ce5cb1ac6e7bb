"""Charge after review (复核后扣费): a citizen-code ride the verification stage flagged is held, never charged,
until a clerk decides. Charged — only where the code's signature holds (expired, spent before, another card
than the record's) — it is booked once against the cardholder as ``online_fares_book`` books a ride (credit
line, else online account; the code's own card for a card mismatch), audited with the clerk's name, and no
later run books it again; a code that does not verify or is missing cannot be charged. Waived (免收) it is
closed and stays unbooked. Another city's cardholder is never booked here: the clerk's charge leaves the ride
to its issuer through clearing, whose validation checks the code again. The admin action and the CLI say the
same in Chinese."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.utils import timezone
from django_tenants.utils import tenant_context

from citycard.interop.models import ClearingRecord
from citycard.interop.services.cycles import cycle_get_or_create, cycle_run
from citycard.interop.services.messages import outbox_collect
from citycard.interop.terms import agreement_business_date
from citycard.platform.admin_sites import tenant_admin
from citycard.platform.audit.models import AuditEntry
from citycard.platform.errors import Conflict, DomainError
from citycard.platform.services import user_create
from citycard.tenants.accounts import services as accounts
from citycard.tenants.accounts.models import LedgerAccount
from citycard.tenants.credit import selectors as sel
from citycard.tenants.credit import services as credit
from citycard.tenants.credit.admin import CodeRideFlagAdmin
from citycard.tenants.credit.models import CodeRideFlag, CodeRideReview, CreditItem, RoamingFare
from citycard.tenants.entitlements.acceptance import citizen_code_issue
from citycard.tenants.exchange.models import IssuerRejection
from citycard.tenants.terminals import checks
from citycard.tenants.terminals.ingest import batch_ingest
from citycard.tenants.terminals.models import ReviewFlag, Transaction
from citycard.tenants.terminals.simulate import SimTerminal
from citycard.terminal_kit.beijing import BEIJING
from tests.interop.conftest import yrd_transit  # noqa: F401
from tests.tenants.credit.test_credit import assert_balanced
from tests.tenants.credit.test_credit_code_checks import _forged
from tests.tenants.credit.test_credit_fares import _bus, _code_ride
from tests.tenants.credit.test_credit_fares_roaming import _register

pytestmark = pytest.mark.django_db

LATER = dt.timedelta(hours=1)
CLERK = "user:clerk-wang"


def _flag(card_no: str) -> ReviewFlag:
    return ReviewFlag.objects.get(card_no=card_no, code__startswith="code_")


def _balance(card_no: str) -> int:
    return LedgerAccount.objects.get(card_no=card_no).balance_fen


def test_a_clerk_charges_a_held_ride_once_or_waives_it(city, rules, insured_card):
    names = ("expired", "replayed", "shown", "rode", "forged", "missing", "on_credit", "poor")
    cards = {name: insured_card() for name in names}
    credit.credit_grant(card_no=cards["on_credit"], actor="t")
    for i, name in enumerate(("expired", "replayed", "shown", "rode", "forged", "missing")):
        accounts.account_topup(
            card_no=cards[name], amount_fen=1000, idempotency_key=f"rev-top-{i}", actor="t"
        )
    sim = _bus(city)
    now = timezone.now().astimezone(BEIJING).replace(microsecond=0) - dt.timedelta(minutes=30)
    stale = {
        name: citizen_code_issue(card_no=cards[name], at=now - dt.timedelta(minutes=10))
        for name in ("expired", "on_credit", "poor")
    }
    spent = citizen_code_issue(card_no=cards["replayed"], at=now)
    taps = [
        _code_ride(sim, cards["expired"], at=now, amount_fen=200, code=stale["expired"]),
        _code_ride(sim, cards["replayed"], at=now, amount_fen=200, code=spent),
        _code_ride(sim, cards["replayed"], at=now + dt.timedelta(seconds=30), amount_fen=300, code=spent),
        # the code shown is one cardholder's, the record names another card
        _code_ride(
            sim,
            cards["rode"],
            at=now,
            amount_fen=250,
            code=citizen_code_issue(card_no=cards["shown"], at=now),
        ),
        _code_ride(
            sim,
            cards["forged"],
            at=now,
            amount_fen=200,
            code=_forged(citizen_code_issue(card_no=cards["forged"], at=now)),
        ),
        {**_code_ride(sim, cards["missing"], at=now, amount_fen=200), "code": None},
        _code_ride(sim, cards["on_credit"], at=now, amount_fen=200, code=stale["on_credit"]),
        _code_ride(sim, cards["poor"], at=now, amount_fen=200, code=stale["poor"]),
    ]
    assert (
        batch_ingest(
            tenant=city, body=sim.sign(sim.payload(taps, created_at=now + dt.timedelta(minutes=1)))
        ).accepted
        == 8
    )
    flags = {name: _flag(cards[name]) for name in names if name not in ("shown",)}
    assert {n: f.code for n, f in flags.items()} == {
        "expired": "code_expired",
        "replayed": "code_replayed",
        "rode": "code_other_card",
        "forged": "code_invalid",
        "missing": "code_missing",
        "on_credit": "code_expired",
        "poor": "code_expired",
    }
    counts = credit.online_fares_book(actor="t", now=timezone.now() + LATER)
    assert (counts["charged"], counts["held"]) == (1, 7)  # the replayed code's first ride only
    assert sel.code_flags(open_only=True).count() == 7

    # charged after review: once, into the ledger as the booking would have, audited with the clerk's name
    review = credit.code_ride_charge(
        flag_id=flags["expired"].pk, actor=CLERK, note="司机确认乘客上车时已出示"
    )
    assert (review.decision, review.outcome, review.card_no, review.amount_fen) == (
        "charge",
        "charged",
        cards["expired"],
        200,
    )
    assert _balance(cards["expired"]) == 800
    assert credit.code_ride_charge(flag_id=flags["expired"].pk, actor=CLERK) == review  # a retry: the same
    assert _balance(cards["expired"]) == 800
    flag = ReviewFlag.objects.get(pk=flags["expired"].pk)
    assert (flag.resolved_by, flag.resolved_at is not None) == (CLERK, True)
    audited = AuditEntry.objects.get(action="credit.code_ride_charge")
    assert (audited.actor, audited.object_id) == (CLERK, f"tap:{flag.transaction_id}")
    assert json.loads(audited.payload)["note"] == "司机确认乘客上车时已出示"

    replayed = credit.code_ride_charge(flag_id=flags["replayed"].pk, actor=CLERK)
    assert (replayed.outcome, _balance(cards["replayed"])) == ("charged", 1000 - 200 - 300)
    # a card mismatch: the card the code's signature proves is charged, not the record's
    mismatch = credit.code_ride_charge(flag_id=flags["rode"].pk, actor=CLERK)
    assert (mismatch.card_no, _balance(cards["shown"]), _balance(cards["rode"])) == (
        cards["shown"],
        750,
        1000,
    )
    # a credit line takes it as it takes any code ride
    deferred = credit.code_ride_charge(flag_id=flags["on_credit"].pk, actor=CLERK)
    assert deferred.outcome == "deferred"
    assert CreditItem.objects.get(payment_id=f"tap:{flags['on_credit'].transaction_id}").amount_fen == 200

    # refused, nothing written: no money, a code that does not verify, no code at all
    with pytest.raises(DomainError) as unpaid:
        credit.code_ride_charge(flag_id=flags["poor"].pk, actor=CLERK)
    assert unpaid.value.code == "unpaid"
    for name in ("forged", "missing"):
        with pytest.raises(DomainError) as refused:
            credit.code_ride_charge(flag_id=flags[name].pk, actor=CLERK)
        assert refused.value.code == "not_chargeable"
    assert not CodeRideReview.objects.filter(
        transaction_id__in=[flags[n].transaction_id for n in ("poor", "forged", "missing")]
    ).exists()
    assert ReviewFlag.objects.get(pk=flags["forged"].pk).resolved_at is None

    # waived: closed, never charged; it cannot be charged afterwards
    waived = credit.code_ride_waive(flag_id=flags["forged"].pk, actor=CLERK, note="伪造的市民码")
    assert (waived.decision, waived.outcome) == ("waive", "waived")
    with pytest.raises(Conflict):
        credit.code_ride_charge(flag_id=flags["forged"].pk, actor=CLERK)
    with pytest.raises(Conflict):
        credit.code_ride_waive(flag_id=flags["expired"].pk, actor=CLERK)

    # the booking runs on: what was charged is not charged again, what is held stays held
    counts = credit.online_fares_book(actor="t", now=timezone.now() + LATER)
    assert (counts["charged"], counts["deferred"]) == (0, 0)
    counts = credit.online_fares_book(actor="t", since=now - dt.timedelta(days=1))
    assert (counts["charged"], counts["deferred"], counts["held"]) == (0, 0, 3)  # forged, missing, poor
    assert _balance(cards["expired"]) == 800 and _balance(cards["forged"]) == 1000
    assert sel.code_flags(open_only=True).count() == 2  # missing, poor
    assert_balanced()


def test_the_cli_lists_charges_and_waives_in_chinese(city, rules, insured_card, capsys):
    card = insured_card()
    accounts.account_topup(card_no=card, amount_fen=1000, idempotency_key="cli-top", actor="t")
    sim = _bus(city)
    now = timezone.now().astimezone(BEIJING).replace(microsecond=0) - dt.timedelta(minutes=30)
    code = citizen_code_issue(card_no=card, at=now - dt.timedelta(minutes=10))
    batch_ingest(
        tenant=city,
        body=sim.sign(
            sim.payload([_code_ride(sim, card, at=now, amount_fen=200, code=code)], created_at=now)
        ),
    )
    flag = _flag(card)
    tenant = connection.tenant.code
    call_command("credit", "--tenant", tenant, "code-flags", "--open")
    listed = capsys.readouterr().out
    assert (
        str(flag.pk) in listed and "¥2.00" in listed and "(code_expired)" in listed and "复核后扣费" in listed
    )
    call_command("credit", "--tenant", tenant, "code-charge", str(flag.pk), "--note", "乘客来电确认")
    charged = capsys.readouterr().out
    assert "复核后扣费" in charged and "从在线账户扣收" in charged and card in charged
    assert _balance(card) == 800
    with pytest.raises(CommandError, match="此乘车已有决定：复核后扣费"):
        call_command("credit", "--tenant", tenant, "code-waive", str(flag.pk))


def test_the_admin_actions_charge_and_waive(city, rules, insured_card):
    """The admin's change list of held code rides (电子市民码复核): charge the selected after review, waive."""
    cards = [insured_card() for _ in range(2)]
    for i, card in enumerate(cards):
        accounts.account_topup(card_no=card, amount_fen=1000, idempotency_key=f"adm-top-{i}", actor="t")
    sim = _bus(city)
    now = timezone.now().astimezone(BEIJING).replace(microsecond=0) - dt.timedelta(minutes=30)
    taps = [
        _code_ride(
            sim,
            card,
            at=now,
            amount_fen=200,
            code=citizen_code_issue(card_no=card, at=now - dt.timedelta(minutes=10)),
        )
        for card in cards
    ]
    batch_ingest(tenant=city, body=sim.sign(sim.payload(taps, created_at=now)))
    # the city's administrator, signed in on the city's admin site
    clerk = Client()
    clerk.force_login(
        user_create(
            username="clerk-li", role="city_admin", tenant_code=city.code, password="a-long-password-1"
        )
    )
    host = {"HTTP_HOST": f"{city.code}.localhost"}
    page = clerk.get("/admin/credit/coderideflag/", **host)
    assert page.status_code == 200 and all(card in page.content.decode() for card in cards)
    flags = {f.card_no: f.pk for f in CodeRideFlag.objects.all()}
    for action, card in (("charge_selected", cards[0]), ("waive_selected", cards[1])):
        done = clerk.post(
            "/admin/credit/coderideflag/", {"action": action, "_selected_action": [flags[card]]}, **host
        )
        assert done.status_code == 302, done.content.decode()[:500]
    decided = {r.card_no: (r.outcome, r.decided_by) for r in CodeRideReview.objects.all()}
    assert decided == {cards[0]: ("charged", "user:clerk-li"), cards[1]: ("waived", "user:clerk-li")}
    assert clerk.get("/admin/credit/coderidereview/", **host).status_code == 200
    admin = CodeRideFlagAdmin(CodeRideFlag, tenant_admin)
    shown = {f.card_no: admin.decision(f) for f in sel.code_flags()}
    assert shown[cards[0]].startswith("复核后扣费") and shown[cards[1]].startswith("免收")
    assert _balance(cards[0]) == 800 and _balance(cards[1]) == 1000


def test_a_visitors_held_ride_is_left_to_its_issuer_through_clearing(
    yrd_transit,  # noqa: F811
    city,
    rules,
    insured_card,
    tenant,
):
    """Hangzhou flags a Jiaxing cardholder's expired code; its clerk's charge books nothing in Hangzhou (no
    account of theirs there) and names the clearing record the ride went to Jiaxing as; Jiaxing's validation
    checks the code again and rejects it with the same reason: nobody is charged."""
    checks.route_cache_clear()
    jiaxing, hangzhou = city, tenant("hangzhou")
    card = insured_card()
    accounts.account_topup(card_no=card, amount_fen=1000, idempotency_key="visit-top", actor="t")
    now = timezone.now().astimezone(BEIJING).replace(microsecond=0) - dt.timedelta(hours=1)
    code = citizen_code_issue(card_no=card, at=now - dt.timedelta(minutes=10))
    with tenant_context(hangzhou):
        sim = SimTerminal("HZ-BUS-QR9", "hangzhou", service="bus", route="B9")
        _register(sim)
        batch_ingest(
            tenant=hangzhou,
            body=sim.sign(
                sim.payload([_code_ride(sim, card, at=now, amount_fen=300, code=code)], created_at=now)
            ),
        )
        flag = _flag(card)
        assert flag.code == "code_expired"
        ride = Transaction.objects.get(card_no=card)
        review = credit.code_ride_charge(flag_id=flag.pk, actor=CLERK)
        assert (review.outcome, review.record_id, review.fare_id) == ("cleared", f"hangzhou-{ride.id}", "")
        assert not LedgerAccount.objects.filter(card_no=card).exists()
        assert not LedgerAccount.objects.filter(code="fare:online").exists()
        assert ride.outbox_state == "sent"
    assert outbox_collect(tenant=hangzhou, now=timezone.now())["collected"] == 1
    day = agreement_business_date(agreement=yrd_transit, at=now)
    cycle = cycle_get_or_create(network_code="yrd", service="transit", business_date=day)
    cycle = cycle_run(cycle=cycle, now=cycle.cut_off_at + dt.timedelta(minutes=1))
    record = ClearingRecord.objects.with_status().get(record_id=review.record_id)
    assert record.current_status == "rejected"
    with tenant_context(jiaxing):
        assert IssuerRejection.objects.get(card_no=card).reason == "code_expired"
        assert not RoamingFare.objects.exists()
        assert LedgerAccount.objects.get(card_no=card).balance_fen == 1000
    connection.set_schema_to_public()
