"""A transit cycle's settlement on the issuer's ledger: Jiaxing cardholders' citizen-code rides on a Hangzhou
bus are booked by Jiaxing against them (the payable to Hangzhou ``interop:hangzhou``); the transit cycle's
settlement books their issuer fee and pays the rest from Jiaxing's settlement bank account, the payable back
to zero. A Jiaxing card's e-purse tap on the same bus is in the cycle too but on no tenant's ledger: neither
settled there nor a difference. A fare the cardholder could not pay when the cycle settled is a difference,
settled by its own posting once it is charged (the next booking, or a clerk's ``citycard settlement book``)."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from django_tenants.utils import tenant_context

from citycard.interop.models import ClearingRecord
from citycard.interop.services.cycles import (
    cycle_close,
    cycle_get_or_create,
    cycle_net,
    cycle_settle,
    cycle_validate,
)
from citycard.interop.services.messages import outbox_collect
from citycard.interop.terms import agreement_business_date
from citycard.platform.keys import tenant_card_tac_master
from citycard.tenants.accounts import services as accounts
from citycard.tenants.accounts.models import LedgerAccount
from citycard.tenants.credit import services as credit
from citycard.tenants.entitlements.acceptance import citizen_code_issue
from citycard.tenants.settlement.models import CycleSettlement, SettlementDifference
from citycard.tenants.settlement.services import SETTLEMENT_BANK
from citycard.tenants.settlement.tasks import differences_settle_late_all
from citycard.tenants.terminals import checks
from citycard.tenants.terminals.ingest import batch_ingest
from citycard.tenants.terminals.simulate import SimCard, SimTerminal, card_number
from citycard.terminal_kit.beijing import BEIJING
from tests.interop.conftest import cards_known, yrd_transit  # noqa: F401
from tests.tenants.credit.test_credit import assert_balanced
from tests.tenants.credit.test_credit_fares import _code_ride
from tests.tenants.credit.test_credit_fares_roaming import _register

pytestmark = pytest.mark.django_db


def _balance(code: str) -> int:
    account = LedgerAccount.objects.filter(code=code).first()
    return account.balance_fen if account else 0


def test_a_transit_cycle_settles_the_issuers_code_ride_fares(yrd_transit, city, rules, insured_card, tenant):  # noqa: F811
    checks.route_cache_clear()
    jiaxing, hangzhou = city, tenant("hangzhou")
    on_credit, online, poor = insured_card(), insured_card(), insured_card()
    credit.credit_grant(card_no=on_credit, actor="t")
    accounts.account_topup(card_no=online, amount_fen=1000, idempotency_key="settle-top-1", actor="t")
    now = timezone.now().astimezone(BEIJING).replace(microsecond=0) - dt.timedelta(hours=1)
    codes = {card: citizen_code_issue(card_no=card, at=now) for card in (on_credit, online, poor)}
    purse_card = card_number(jiaxing.division_code, 9991)
    cards_known(jiaxing, [purse_card])
    masters = {jiaxing.division_code: tenant_card_tac_master(tenant=jiaxing)}
    with tenant_context(hangzhou):
        sim = SimTerminal("HZ-BUS-QR9", "hangzhou", service="bus", route="B9", tac_masters=masters)
        _register(sim)
        taps = [
            _code_ride(sim, card, at=now + dt.timedelta(seconds=20 + i), amount_fen=amount, code=codes[card])
            for i, (card, amount) in enumerate(((on_credit, 250), (online, 300), (poor, 400)))
        ]
        taps.append(sim.tap(SimCard(purse_card), at=now + dt.timedelta(seconds=40), amount_fen=200))
        result = batch_ingest(
            tenant=hangzhou, body=sim.sign(sim.payload(taps, created_at=now + dt.timedelta(minutes=1)))
        )
        assert result.accepted == 4
    assert outbox_collect(tenant=hangzhou, now=timezone.now())["collected"] == 1
    day = agreement_business_date(agreement=yrd_transit, at=now)
    cycle = cycle_get_or_create(network_code="yrd", service="transit", business_date=day)
    later = cycle.cut_off_at + dt.timedelta(minutes=1)
    cycle = cycle_validate(cycle=cycle_close(cycle=cycle, now=later), now=later)
    with tenant_context(jiaxing):
        # the fares are booked before the cycle settles (the beat books them every few minutes): the poor
        # cardholder's account cannot pay, that fare stays unpaid
        counts = credit.online_fares_book(actor="t", now=timezone.now() + dt.timedelta(hours=1))
        assert (counts["deferred"], counts["charged"], counts["unpaid"]) == (1, 1, 1)
        assert _balance("interop:hangzhou") == 550
    cycle = cycle_settle(cycle=cycle_net(cycle=cycle, now=later), now=later)
    records = {
        r.card_no: r
        for r in ClearingRecord.objects.filter(cycle=cycle, card_no__in=[on_credit, online, poor, purse_card])
    }
    assert len(records) == 4
    positions = dict(cycle.positions.values_list("participant", "net_fen"))

    with tenant_context(jiaxing):
        booked = CycleSettlement.objects.get(cycle=cycle.label)
        paid = [records[on_credit], records[online]]
        # settled: the two fares booked, less the issuer's fee Jiaxing earns on them
        assert booked.settled_fen == -sum(r.amount_fen - r.issuer_fee_fen for r in paid)
        assert booked.fees_fen == sum(r.issuer_fee_fen for r in paid) == _balance("fee:interchange")
        assert _balance("interop:hangzhou") == 0
        assert _balance(SETTLEMENT_BANK) == -booked.settled_fen
        # the net position also carries the e-purse tap (not on the ledger) and the unpaid fare
        purse, unpaid = records[purse_card], records[poor]
        assert (
            booked.file_net_fen
            == positions["jiaxing"]
            == booked.settled_fen - sum(r.amount_fen - r.issuer_fee_fen for r in (purse, unpaid))
        )
        difference = SettlementDifference.objects.get()
        assert (difference.record_id, difference.reason, difference.file_fen, difference.ledger_fen) == (
            unpaid.record_id,
            "not_booked",
            400,
            0,
        )
        assert_balanced()

        # The cardholder tops up; the fare is charged; the clerk's rerun settles it by its own posting.
        accounts.account_topup(card_no=poor, amount_fen=1000, idempotency_key="settle-top-2", actor="t")
        assert credit.online_fares_book(actor="t", now=timezone.now() + dt.timedelta(hours=1))["charged"] == 1
        assert _balance("interop:hangzhou") == 400
        bank_before = _balance(SETTLEMENT_BANK)
    # the beat task settles it (a clerk's `citycard settlement book` would too)
    assert (
        settings.CELERY_BEAT_SCHEDULE["settlement-late-records"]["task"] == differences_settle_late_all.name
    )
    assert differences_settle_late_all() == {"jiaxing": [unpaid.record_id]}
    assert differences_settle_late_all() == {}
    out = io.StringIO()
    with tenant_context(jiaxing):
        difference.refresh_from_db()
        assert difference.resolved_at is not None and difference.posting is not None
        assert difference.posting.idempotency_key == f"interop-settle-late:{unpaid.record_id}"
        assert _balance("interop:hangzhou") == 0
        assert _balance(SETTLEMENT_BANK) - bank_before == unpaid.amount_fen - unpaid.issuer_fee_fen
        booked.refresh_from_db()
        assert booked.settled_fen == positions["jiaxing"] + purse.amount_fen - purse.issuer_fee_fen
        # once: run again, nothing more
        call_command("settlement", "book", "--tenant", "jiaxing", stdout=out)
        assert _balance(SETTLEMENT_BANK) - bank_before == unpaid.amount_fen - unpaid.issuer_fee_fen
        assert_balanced()
    # Hangzhou's ledger holds none of it (a transit acquirer books no roaming ride): nothing to settle there
    with tenant_context(hangzhou):
        assert not CycleSettlement.objects.filter(cycle=cycle.label, records__gt=0).exists()
    connection.set_schema_to_public()
