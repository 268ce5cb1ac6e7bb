"""Rides paid by the citizen code (电子市民码, fare medium 04; 先乘后付), end to end through ingestion: the
terminal uploads them in a signed batch, no chip check flags them, and ``online_fares_book`` defers each
fare onto the cardholder's credit line (active, credit switched on, within the limit) or charges it to the
online account; each tap once, whatever the number of runs."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from citycard.tenants.accounts import services as accounts
from citycard.tenants.accounts.models import LedgerAccount
from citycard.tenants.credit import selectors as sel
from citycard.tenants.credit import services as credit
from citycard.tenants.credit.models import CreditItem, FaresCursor, ItemKind
from citycard.tenants.entitlements.acceptance import citizen_code_issue
from citycard.tenants.terminals.ingest import batch_ingest
from citycard.tenants.terminals.models import ReviewFlag
from citycard.tenants.terminals.services import terminal_register
from citycard.tenants.terminals.simulate import SimCard, SimTerminal
from citycard.terminal_kit.beijing import BEIJING
from tests.tenants.credit.test_credit import assert_balanced

pytestmark = pytest.mark.django_db


def _bus(city) -> SimTerminal:
    sim = SimTerminal("JX-BUS-QR1", city.code, service="bus", route="K1")
    terminal_register(
        terminal_id=sim.terminal_id,
        operator="嘉兴公交",
        department="transport",
        service=sim.service,
        route=sim.route,
        public_key=sim.public_key,
        actor="t",
    )
    return sim


def _code_ride(
    sim: SimTerminal, card_no: str, *, at: dt.datetime, amount_fen: int, code: str | None = None
) -> dict:
    """A ride the terminal took by scanning the rider's citizen code (issued by the city a few seconds
    before, unless ``code`` is given): no chip, so no e-purse balance and no card counter."""
    tap = sim.tap(SimCard(card_no, balance_fen=0), at=at, amount_fen=amount_fen)
    if code is None:
        code = citizen_code_issue(card_no=card_no, at=at - dt.timedelta(seconds=10))
    return {**tap, "card_scheme": "04", "card_counter": 0, "code": code}


def _booked(counts: dict[str, int]) -> tuple[int, int, int]:
    return counts["deferred"], counts["charged"], counts["unpaid"]


def test_code_rides_are_deferred_onto_credit_or_charged_online_once(city, rules, insured_card):
    on_credit, no_line, poor = insured_card(), insured_card(), insured_card()
    credit.credit_grant(card_no=on_credit, actor="t")
    accounts.account_topup(card_no=no_line, amount_fen=1000, idempotency_key="no-line-top", actor="t")
    sim = _bus(city)
    now = timezone.now().astimezone(BEIJING).replace(microsecond=0) - dt.timedelta(minutes=30)
    taps = [
        _code_ride(sim, on_credit, at=now, amount_fen=200),
        _code_ride(sim, on_credit, at=now + dt.timedelta(minutes=1), amount_fen=300),
        _code_ride(sim, no_line, at=now + dt.timedelta(minutes=2), amount_fen=200),
        _code_ride(sim, poor, at=now + dt.timedelta(minutes=3), amount_fen=200),
        # an ordinary e-purse tap: the chip paid it, nothing to book
        sim.tap(SimCard(no_line, balance_fen=5000), at=now + dt.timedelta(minutes=4), amount_fen=200),
    ]
    result = batch_ingest(
        tenant=city, body=sim.sign(sim.payload(taps, created_at=now + dt.timedelta(minutes=5)))
    )
    assert result.accepted == 5
    # No chip was written: the code rides carry no card TAC to check and move no e-purse shadow.
    flagged = set(
        ReviewFlag.objects.filter(code__in=["tac_invalid", "shadow_divergence"]).values_list(
            "card_no", flat=True
        )
    )
    assert on_credit not in flagged and poor not in flagged
    holder_before = LedgerAccount.objects.get(card_no=no_line).balance_fen

    # the cursor keeps the rides of the last minutes to read again; an hour on, it passes them
    later = timezone.now() + dt.timedelta(hours=1)
    counts = credit.online_fares_book(actor="t", now=later)
    assert counts == {"deferred": 2, "charged": 1, "unpaid": 1, "held": 0, "waiting": 0}
    items = list(CreditItem.objects.filter(line__card_no=on_credit).order_by("at"))
    assert [(i.kind, i.amount_fen) for i in items] == [(ItemKind.FARE, 200), (ItemKind.FARE, 300)]
    assert all(i.payment_id.startswith("tap:") and i.payee == "bus K1" for i in items)
    assert sel.owed_fen(sel.line_of_card(card_no=on_credit)) == 500
    assert LedgerAccount.objects.get(card_no=no_line).balance_fen == holder_before - 200
    assert LedgerAccount.objects.get(code="fare:online").balance_fen == 200
    assert LedgerAccount.objects.get(code="fare:credit").balance_fen == 500

    # Idempotent per tap: a second run books nothing again; the unpaid fare is asked again and paid once
    # the account has the money.
    cursor = FaresCursor.objects.get()
    assert len(cursor.pending_tx_ids) == 1  # the unpaid fare, asked again below the cursor
    assert _booked(credit.online_fares_book(actor="t", now=later)) == (0, 0, 1)
    accounts.account_topup(card_no=poor, amount_fen=1000, idempotency_key="poor-top", actor="t")
    assert _booked(credit.online_fares_book(actor="t", now=later)) == (0, 1, 0)
    assert _booked(credit.online_fares_book(actor="t", now=later)) == (0, 0, 0)
    assert FaresCursor.objects.get().pending_tx_ids == []
    # --since reads a window again whatever the cursor: nothing is booked twice
    assert _booked(credit.online_fares_book(actor="t", since=now - dt.timedelta(hours=1))) == (0, 0, 0)
    assert_balanced()


def test_over_the_limit_or_suspended_the_online_account_pays(city, rules, insured_card):
    card = insured_card()
    accounts.account_topup(card_no=card, amount_fen=1000, idempotency_key="top", actor="t")
    credit.credit_grant(card_no=card, actor="t")
    credit.credit_rules_set(actor="t", limit_fen=250)  # applies to the existing line
    sim = _bus(city)
    now = timezone.now().astimezone(BEIJING).replace(microsecond=0) - dt.timedelta(minutes=30)
    taps = [_code_ride(sim, card, at=now + dt.timedelta(minutes=i), amount_fen=200) for i in range(2)]
    batch_ingest(tenant=city, body=sim.sign(sim.payload(taps, created_at=now + dt.timedelta(minutes=5))))
    assert _booked(credit.online_fares_book(actor="t")) == (1, 1, 0)
    # Credit switched off in the city: nothing more is deferred.
    credit.credit_rules_set(actor="t", enabled=False, limit_fen=50_000)
    more = [_code_ride(sim, card, at=now + dt.timedelta(minutes=10), amount_fen=100)]
    batch_ingest(tenant=city, body=sim.sign(sim.payload(more, created_at=now + dt.timedelta(minutes=11))))
    assert _booked(credit.online_fares_book(actor="t")) == (0, 1, 0)
    assert_balanced()
