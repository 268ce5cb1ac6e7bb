"""A roaming card paying at a merchant: the e-purse purchase uploaded by the merchant's POS in Jiaxing is
booked to the merchant (from Hangzhou's interop receivable), goes to Jiaxing's outbox as a clearing record
of service ``merchant``, joins the network's merchant-payment cycle, is validated by Hangzhou (the TAC its
card computed) and netted: Hangzhou owes Jiaxing the purchase less the agreement's fees."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from django_tenants.utils import tenant_context

from citycard.interop.models import ClearingRecord
from citycard.interop.services.agreements import agreement_set
from citycard.interop.services.cycles import cycle_get_or_create, cycle_run
from citycard.interop.services.messages import outbox_collect
from citycard.interop.terms import agreement_business_date
from citycard.tenants.accounts.models import LedgerAccount, Posting
from citycard.tenants.accounts.selectors import ledger_totals
from citycard.tenants.exchange.selectors import reconciliation_file
from citycard.tenants.exchange.services import reconciliation_parse
from citycard.tenants.merchants import services as merchants
from citycard.tenants.merchants.models import Payment
from citycard.tenants.terminals import checks
from citycard.tenants.terminals.ingest import batch_ingest
from citycard.tenants.terminals.simulate import SimCard, SimTerminal, card_number

from .conftest import SHANGHAI, cards_known, tac_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def yrd_merchant(db):
    return agreement_set(
        network_code="yrd",
        service="merchant",
        valid_from=dt.date(2020, 1, 1),
        issuer_fee_bps=30,
        network_fee_bps=5,
        cut_off=dt.time(4, 0),
        dispute_window_days=30,
        actor="test",
    )


def test_a_roaming_cards_merchant_purchase_clears_through_interop(tenant, yrd_merchant):
    checks.route_cache_clear()
    jiaxing, hangzhou = tenant("jiaxing"), tenant("hangzhou")
    now = timezone.now().astimezone(SHANGHAI).replace(microsecond=0)
    start = now - dt.timedelta(hours=1)
    cards = [card_number("330100", 900 + i) for i in range(3)]
    cards_known(hangzhou, cards)
    sim = SimTerminal("JX-CANTEEN-POS", "jiaxing", service="merchant", route="jx-canteen")
    amounts = [1250, 800, 1675]
    with tenant_context(jiaxing):
        merchants.merchant_onboard(
            code="jx-canteen",
            name="嘉兴学院食堂",
            licence_no=merchants.licence_no_build(division="330400", organisation="MA0000001"),
            category="5814",
            settlement_bank="嘉兴银行",
            settlement_account="6222020000123456789",
            fee_bps=60,
            accepted_means=["purse"],
            actor="test",
        )
        merchants.merchant_terminal_register(
            merchant_code="jx-canteen",
            terminal_id=sim.terminal_id,
            public_key=sim.public_key,
            location="一食堂",
            actor="test",
        )
        taps = []
        for i, (number, amount) in enumerate(zip(cards, amounts, strict=True)):
            when = start + dt.timedelta(seconds=i)
            tap = sim.tap(SimCard(number), at=when, amount_fen=amount)
            tap["terminal_no"] = "330400000009"
            tap["tac"] = tac_for(
                number, amount=amount, terminal_no=tap["terminal_no"], seq=tap["terminal_seq"], when=when
            )
            taps.append(tap)
        result = batch_ingest(
            tenant=jiaxing, body=sim.sign(sim.payload(taps, created_at=start + dt.timedelta(seconds=5)))
        )
        assert result.accepted == 3
        assert merchants.merchant_taps_book(actor="test") == 3
        assert sorted(Payment.objects.values_list("issuer_tenant", "amount_fen")) == [
            ("hangzhou", 800),
            ("hangzhou", 1250),
            ("hangzhou", 1675),
        ]
        assert LedgerAccount.objects.get(code="interop:hangzhou").balance_fen == -3725
        assert LedgerAccount.objects.get(code="merchant:jx-canteen").balance_fen == 3725
    assert outbox_collect(tenant=jiaxing, now=now) == {"collected": 1, "refused": 0}
    day = agreement_business_date(agreement=yrd_merchant, at=start)
    cycle = cycle_get_or_create(network_code="yrd", service="merchant", business_date=day)
    records = ClearingRecord.objects.filter(cycle=cycle)
    assert sorted(records.values_list("amount_fen", flat=True)) == sorted(amounts)
    assert {r.data["service"] for r in records} == {"merchant"} and {r.data["route"] for r in records} == {
        "jx-canteen"
    }
    # The transit cycle of the day has none of them.
    assert not ClearingRecord.objects.filter(
        cycle__agreement__service="transit", issuer="hangzhou", card_no__in=cards
    ).exists()
    cycle = cycle_run(cycle=cycle, now=cycle.cut_off_at + dt.timedelta(minutes=1))
    statuses = (
        ClearingRecord.objects.filter(cycle=cycle).with_status().values_list("current_status", flat=True)
    )
    assert sorted(statuses) == ["valid"] * 3
    # 3725 less the issuer's 0.30 % and the network's 0.05 %, half-up per record: 4+2+5 and 1+0+1.
    assert dict(cycle.positions.values_list("participant", "net_fen")) == {
        "hangzhou": -3725 + 11,
        "jiaxing": 3725 - 11 - 2,
        "yrd-operator": 2,
    }
    # The issuer's books (发卡方记账): Hangzhou's own cards spent at Jiaxing's canteen — its e-purse float
    # down by the purchases, a payable to Jiaxing of the same amount, less the issuer's fee it earned at the
    # cycle's settlement (4+2+5 fen of interchange income): the payable is what Hangzhou pays, and the
    # settlement paid it from the settlement bank account (tests/interop/test_settlement_books.py). Balanced,
    # booked once however often the records are validated or the manifest delivered.
    with tenant_context(hangzhou):
        assert LedgerAccount.objects.get(code="interop:jiaxing").balance_fen == 0
        assert LedgerAccount.objects.get(code="bank:interop-settlement").balance_fen == 3725 - 11
        assert LedgerAccount.objects.get(code="fee:interchange").balance_fen == 11
        assert LedgerAccount.objects.get(code="purse:float").balance_fen == -3725
        assert Posting.objects.filter(idempotency_key__startswith="merchant-roaming:").count() == 3
        fees = Posting.objects.get(idempotency_key=f"interop-fees:{cycle.label}")
        assert sorted(fees.legs.values_list("account__code", "amount_fen")) == [
            ("fee:interchange", 11),
            ("interop:jiaxing", -11),
        ]
        totals = ledger_totals()
        assert totals.unbalanced_postings == 0 and totals.balances_total_fen == 0
        records = [
            {
                "record_id": r.record_id,
                "card_no": r.card_no,
                "amount_fen": r.amount_fen,
                "acquirer": "jiaxing",
                "tapped_at": r.data["tapped_at"],
            }
            for r in ClearingRecord.objects.filter(cycle=cycle)
        ]
        assert merchants.merchant_roaming_spent_book(records, now) == 0
        manifest, text = reconciliation_file(message_id=f"rcn-{cycle.label}-hangzhou")
        assert manifest["service"] == "merchant"
        assert merchants.merchant_cycle_fees_book(manifest, reconciliation_parse(text)[1], now) == fees
        assert LedgerAccount.objects.get(code="interop:jiaxing").balance_fen == 0
        assert Posting.objects.filter(idempotency_key__startswith="interop-fees:").count() == 1
    # The acquirer's books: Jiaxing's receivable from Hangzhou less the issuer's and the network's fees it
    # pays (11 + 2 fen of fee expense) is what the settlement brought in; the canteen's own fee is apart
    # (Jiaxing's daily merchant settlement takes it from the canteen's payable).
    with tenant_context(jiaxing):
        assert LedgerAccount.objects.get(code="interop:hangzhou").balance_fen == 0
        assert LedgerAccount.objects.get(code="bank:interop-settlement").balance_fen == -(3725 - 13)
        assert LedgerAccount.objects.get(code="fee-expense:interchange").balance_fen == -13
        assert LedgerAccount.objects.get(code="merchant:jx-canteen").balance_fen == 3725
        totals = ledger_totals()
        assert totals.unbalanced_postings == 0 and totals.balances_total_fen == 0
