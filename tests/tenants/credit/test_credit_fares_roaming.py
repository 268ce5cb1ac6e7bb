"""A Jiaxing cardholder's citizen code on a Hangzhou bus (异地扫码乘车), end to end across two tenants: Hangzhou
has no online account of theirs and charges nothing; the ride goes to Jiaxing like a roaming card tap (the
clearing record carries the code), Jiaxing's validation checks the code again with its own keys and spends
its nonce in its own schema, and Jiaxing books the fare against its cardholder (the credit line, or the
online account) with the payable to Hangzhou, settled through the transit cycle. A forged code and a code
already used on a Jiaxing bus are rejected to Hangzhou with their reason and booked by nobody."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.utils import timezone
from django_tenants.utils import tenant_context

from citycard.interop.models import ClearingRecord
from citycard.interop.services.cycles import cycle_get_or_create, cycle_run
from citycard.interop.services.messages import outbox_collect
from citycard.interop.terms import agreement_business_date
from citycard.tenants.accounts import services as accounts
from citycard.tenants.accounts.models import LedgerAccount
from citycard.tenants.credit import selectors as sel
from citycard.tenants.credit import services as credit
from citycard.tenants.credit.models import CreditItem, RoamingFare
from citycard.tenants.entitlements.acceptance import citizen_code_issue
from citycard.tenants.exchange.models import IssuerRejection
from citycard.tenants.terminals import checks
from citycard.tenants.terminals.ingest import batch_ingest
from citycard.tenants.terminals.models import ReviewFlag, Transaction
from citycard.tenants.terminals.services import terminal_register
from citycard.tenants.terminals.simulate import SimTerminal
from citycard.terminal_kit.beijing import BEIJING
from tests.interop.conftest import yrd_transit  # noqa: F401
from tests.tenants.credit.test_credit import assert_balanced
from tests.tenants.credit.test_credit_code_checks import _forged
from tests.tenants.credit.test_credit_fares import _bus, _code_ride

pytestmark = pytest.mark.django_db


def _register(sim: SimTerminal) -> None:
    terminal_register(
        terminal_id=sim.terminal_id,
        operator="杭州公交",
        department="transport",
        service=sim.service,
        route=sim.route,
        public_key=sim.public_key,
        actor="t",
    )


def test_a_visitors_code_ride_is_booked_by_the_home_city(yrd_transit, city, rules, insured_card, tenant):  # noqa: F811
    checks.route_cache_clear()
    jiaxing, hangzhou = city, tenant("hangzhou")
    on_credit, forged, replayed = insured_card(), insured_card(), insured_card()
    credit.credit_grant(card_no=on_credit, actor="t")
    for i, card in enumerate((forged, replayed)):
        accounts.account_topup(card_no=card, amount_fen=1000, idempotency_key=f"roam-top-{i}", actor="t")
    now = timezone.now().astimezone(BEIJING).replace(microsecond=0) - dt.timedelta(hours=1)
    codes = {card: citizen_code_issue(card_no=card, at=now) for card in (on_credit, forged, replayed)}
    codes[forged] = _forged(codes[forged])
    second = citizen_code_issue(card_no=on_credit, at=now + dt.timedelta(minutes=5))
    # the replayed code is used first on a Jiaxing bus: Jiaxing books it there
    home_bus = _bus(jiaxing)
    home = [
        _code_ride(home_bus, replayed, at=now + dt.timedelta(seconds=5), amount_fen=200, code=codes[replayed])
    ]
    batch_ingest(
        tenant=jiaxing, body=home_bus.sign(home_bus.payload(home, created_at=now + dt.timedelta(minutes=1)))
    )

    with tenant_context(hangzhou):
        sim = SimTerminal("HZ-BUS-QR1", "hangzhou", service="bus", route="B1")
        _register(sim)
        taps = [
            _code_ride(sim, card, at=now + dt.timedelta(seconds=20), amount_fen=300, code=codes[card])
            for card in (on_credit, forged, replayed)
        ]
        # the cardholder's second ride, with a fresh code: no chip counter, so the issuer finds no card
        # counter "cleared again"
        taps.append(
            _code_ride(
                sim, on_credit, at=now + dt.timedelta(minutes=5, seconds=10), amount_fen=250, code=second
            )
        )
        result = batch_ingest(
            tenant=hangzhou, body=sim.sign(sim.payload(taps, created_at=now + dt.timedelta(minutes=1)))
        )
        assert result.accepted == 4
        assert set(
            Transaction.objects.filter(terminal_id=sim.terminal_id).values_list("routing", flat=True)
        ) == {"roaming"}
        # Hangzhou checks the code too, with Jiaxing's published keys: the forged one is flagged there
        assert list(ReviewFlag.objects.filter(code__startswith="code_").values_list("card_no", "code")) == [
            (forged, "code_invalid")
        ]
        # and charges nothing: there is no Hangzhou account of a Jiaxing cardholder
        counts = credit.online_fares_book(actor="t", now=timezone.now() + dt.timedelta(hours=1))
        assert (counts["deferred"], counts["charged"], counts["unpaid"]) == (0, 0, 0)
        assert not LedgerAccount.objects.filter(code="fare:online").exists()

    assert outbox_collect(tenant=hangzhou, now=timezone.now()) == {"collected": 1, "refused": 0}
    day = agreement_business_date(agreement=yrd_transit, at=now)
    cycle = cycle_get_or_create(network_code="yrd", service="transit", business_date=day)
    cycle = cycle_run(cycle=cycle, now=cycle.cut_off_at + dt.timedelta(minutes=1))
    records = ClearingRecord.objects.filter(cycle=cycle, card_no__in=[on_credit, forged, replayed])
    assert {r.data["code"] for r in records} == {*codes.values(), second}
    statuses = sorted(records.with_status().values_list("card_no", "amount_fen", "current_status"))
    assert statuses == sorted(
        [
            (on_credit, 300, "valid"),
            (on_credit, 250, "valid"),
            (forged, 300, "rejected"),
            (replayed, 300, "rejected"),
        ]
    )
    positions = dict(cycle.positions.values_list("participant", "net_fen"))
    assert positions["hangzhou"] > 0 and positions["jiaxing"] < 0  # Jiaxing owes Hangzhou the valid ride

    with tenant_context(jiaxing):
        reasons = dict(IssuerRejection.objects.values_list("card_no", "reason"))
        assert reasons == {forged: "code_invalid", replayed: "code_replayed"}
        assert sorted(RoamingFare.objects.values_list("card_no", "acquirer", "amount_fen")) == [
            (on_credit, "hangzhou", 250),
            (on_credit, "hangzhou", 300),
        ]
        counts = credit.online_fares_book(actor="t", now=timezone.now() + dt.timedelta(hours=1))
        # the home ride of the replayed code (own terminal) and the visitor's ride on credit
        assert (counts["deferred"], counts["charged"], counts["held"]) == (2, 1, 0)
        items = CreditItem.objects.filter(line__card_no=on_credit)
        assert all(i.payment_id.startswith("roam:hangzhou-") for i in items)
        assert sorted(i.amount_fen for i in items) == [250, 300]
        assert sel.owed_fen(sel.line_of_card(card_no=on_credit)) == 550
        assert LedgerAccount.objects.get(code="interop:hangzhou").balance_fen == 550
        assert LedgerAccount.objects.get(card_no=forged).balance_fen == 1000
        assert LedgerAccount.objects.get(card_no=replayed).balance_fen == 800
        assert not RoamingFare.objects.filter(booked_at__isnull=True).exists()
        # once: booked again or validated again, nothing new
        assert (
            credit.online_fares_book(actor="t", now=timezone.now() + dt.timedelta(hours=1))["deferred"] == 0
        )
        valid = records.filter(card_no=on_credit).first()
        assert (
            credit.roaming_code_fares_take([{**valid.data, "record_id": valid.record_id}], timezone.now())
            == 0
        )
        assert_balanced()
    connection.set_schema_to_public()
