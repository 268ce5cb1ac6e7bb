"""Jiaxing cardholders paying Hangzhou merchants by their citizen code (异地商户扫码支付), end to end across the
two tenants through the real interop layer, record by record.

Hangzhou's merchant terminals scan the codes; Hangzhou checks each code with Jiaxing's published keys and
books the merchant's payable against its receivable from Jiaxing (``interop:jiaxing``), like a roaming
e-purse purchase; a code it cannot verify is held, never booked. The records clear through the network's
merchant-payment cycle: Jiaxing's validation checks each code again with its own keys, spends its nonce once,
and books the payment against its cardholder — onto the credit line, else from the online account — payable
to Hangzhou (``interop:hangzhou``); one neither pays is rejected (``no_funds``). When the cycle's
reconciliation file reaches Hangzhou, each payment Jiaxing rejected (no funds, a bad TAC …) is reversed:
from the merchant's payable while its settlement is open, to a receivable from the merchant once settled."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone
from django_tenants.utils import tenant_context

from citycard.interop.models import ClearingRecord
from citycard.interop.services.cycles import cycle_get_or_create, cycle_run
from citycard.interop.services.messages import outbox_collect
from citycard.interop.terms import agreement_business_date
from citycard.platform.services import user_create
from citycard.tenants.accounts import services as accounts
from citycard.tenants.accounts.models import LedgerAccount, Posting
from citycard.tenants.credit import selectors as sel
from citycard.tenants.credit import services as credit
from citycard.tenants.credit.models import CreditItem, RoamingFare, RoamingPayment
from citycard.tenants.entitlements.acceptance import citizen_code_issue
from citycard.tenants.exchange.models import InboxMessage, IssuerRejection
from citycard.tenants.exchange.selectors import reconciliation_file
from citycard.tenants.exchange.services import reconciliation_parse
from citycard.tenants.merchants import selectors as merchant_sel
from citycard.tenants.merchants import services as merchants
from citycard.tenants.merchants.models import Payment, Settlement
from citycard.tenants.settlement.services import SETTLEMENT_BANK
from citycard.tenants.terminals import checks
from citycard.tenants.terminals.ingest import batch_ingest
from citycard.tenants.terminals.models import ReviewFlag
from citycard.tenants.terminals.simulate import SimCard, SimTerminal
from citycard.terminal_kit.beijing import BEIJING
from tests.interop.conftest import tac_for
from tests.interop.test_merchant_roaming import yrd_merchant  # noqa: F401
from tests.tenants.credit.test_credit import assert_balanced
from tests.tenants.credit.test_credit_code_checks import _forged
from tests.tenants.credit.test_credit_fares import _code_ride

pytestmark = pytest.mark.django_db
HZ = {"HTTP_HOST": "hangzhou.localhost"}


def _merchant(code: str, name: str, organisation: str) -> SimTerminal:
    """A Hangzhou merchant taking the e-purse and the citizen code, with its POS."""
    merchants.merchant_onboard(
        code=code,
        name=name,
        licence_no=merchants.licence_no_build(division="330100", organisation=organisation),
        category="5814",
        settlement_bank="杭州银行",
        settlement_account="6222020000123456789",
        fee_bps=60,
        accepted_means=["purse", "code"],
        actor="t",
    )
    sim = SimTerminal(f"HZ-POS-{code.upper()}", "hangzhou", service="merchant", route=code)
    merchants.merchant_terminal_register(
        merchant_code=code, terminal_id=sim.terminal_id, public_key=sim.public_key, location="一楼", actor="t"
    )
    return sim


def test_visitors_code_payments_are_booked_by_both_cities_and_rejections_reversed(
    yrd_merchant,  # noqa: F811
    city,
    rules,
    insured_card,
    tenant,
):
    checks.route_cache_clear()
    jiaxing, hangzhou = city, tenant("hangzhou")
    on_credit, from_account, poor, forged, purse = (insured_card() for _ in range(5))
    credit.credit_grant(card_no=on_credit, actor="t")
    accounts.account_topup(card_no=from_account, amount_fen=1000, idempotency_key="rp-top-1", actor="t")
    accounts.account_topup(card_no=poor, amount_fen=100, idempotency_key="rp-top-2", actor="t")
    # yesterday evening in Beijing: a day Hangzhou can settle before the cycle's file arrives
    yesterday = timezone.now().astimezone(BEIJING).date() - dt.timedelta(days=1)
    evening = dt.datetime.combine(yesterday, dt.time(20), tzinfo=BEIJING)
    codes = {
        card: citizen_code_issue(card_no=card, at=evening) for card in (on_credit, from_account, poor, forged)
    }
    codes[forged] = _forged(codes[forged])

    with tenant_context(hangzhou):
        canteen = _merchant("hz-canteen", "浙大食堂", "MA0000101")
        shop = _merchant("hz-shop", "西湖便利店", "MA0000102")
        canteen_taps = [
            _code_ride(
                canteen,
                on_credit,
                at=evening + dt.timedelta(seconds=1),
                amount_fen=1250,
                code=codes[on_credit],
            ),
            _code_ride(canteen, poor, at=evening + dt.timedelta(seconds=2), amount_fen=600, code=codes[poor]),
        ]
        shop_taps = [
            _code_ride(
                shop,
                from_account,
                at=evening + dt.timedelta(seconds=3),
                amount_fen=800,
                code=codes[from_account],
            ),
            _code_ride(
                shop, forged, at=evening + dt.timedelta(seconds=4), amount_fen=300, code=codes[forged]
            ),
        ]
        # an e-purse purchase whose TAC Jiaxing's key does not verify
        when = evening + dt.timedelta(seconds=5)
        bad = shop.tap(SimCard(purse, balance_fen=5000), at=when, amount_fen=450)
        bad["terminal_no"] = "330100000077"
        good_tac = tac_for(
            purse, amount=450, terminal_no=bad["terminal_no"], seq=bad["terminal_seq"], when=when
        )
        bad["tac"] = f"{int(good_tac, 16) ^ 1:08x}"
        shop_taps.append(bad)
        for sim, taps in ((canteen, canteen_taps), (shop, shop_taps)):
            result = batch_ingest(
                tenant=hangzhou,
                body=sim.sign(sim.payload(taps, created_at=evening + dt.timedelta(minutes=1))),
            )
            assert result.accepted == len(taps)
        # Hangzhou checked the codes with Jiaxing's keys: the forged one is held
        assert list(ReviewFlag.objects.filter(code__startswith="code_").values_list("card_no", "code")) == [
            (forged, "code_invalid")
        ]
        assert merchants.merchant_taps_book(actor="t") == 4
        assert merchants.merchant_taps_book(actor="t") == 0
        booked = sorted(Payment.objects.values_list("card_no", "means", "issuer_tenant", "amount_fen"))
        assert booked == sorted(
            [
                (on_credit, "code", "jiaxing", 1250),
                (poor, "code", "jiaxing", 600),
                (from_account, "code", "jiaxing", 800),
                (purse, "purse", "jiaxing", 450),
            ]
        )
        assert LedgerAccount.objects.get(code="interop:jiaxing").balance_fen == -3100
        # the canteen's day is settled before the cycle's file arrives; the shop's stays open
        canteen_day = merchants.merchant_settle(merchant_code="hz-canteen", day=yesterday, actor="t")
        assert canteen_day.gross_fen == 1850
        assert_balanced()

    assert outbox_collect(tenant=hangzhou, now=timezone.now()) == {"collected": 2, "refused": 0}
    day = agreement_business_date(agreement=yrd_merchant, at=evening)
    cycle = cycle_get_or_create(network_code="yrd", service="merchant", business_date=day)
    records = ClearingRecord.objects.filter(cycle=cycle)
    assert records.count() == 5 and {r.data["code"] for r in records if "code" in r.data} == set(
        codes.values()
    )
    cycle = cycle_run(cycle=cycle, now=cycle.cut_off_at + dt.timedelta(minutes=1))
    statuses = dict(records.with_status().values_list("card_no", "current_status"))
    assert statuses == {
        on_credit: "valid",
        from_account: "valid",
        poor: "rejected",
        forged: "rejected",
        purse: "rejected",
    }
    assert dict(records.values_list("card_no", "reason")) == {
        on_credit: "",
        from_account: "",
        poor: "no_funds",
        forged: "code_invalid",
        purse: "tac_invalid",
    }
    # 2050 of valid payments less the issuer's 0.30 % (4 + 2) and the network's 0.05 % (1 + 0)
    assert dict(cycle.positions.values_list("participant", "net_fen")) == {
        "hangzhou": 2050 - 7,
        "jiaxing": -2050 + 6,
        "yrd-operator": 1,
    }

    # The issuer's books (Jiaxing): the payments its validation accepted, against its cardholders, payable
    # to Hangzhou; the one neither credit nor account could pay booked by nobody.
    with tenant_context(jiaxing):
        paid = sorted(
            RoamingPayment.objects.values_list("card_no", "acquirer", "merchant", "amount_fen", "source")
        )
        assert paid == sorted(
            [
                (on_credit, "hangzhou", "hz-canteen", 1250, "credit"),
                (from_account, "hangzhou", "hz-shop", 800, "account"),
            ]
        )
        item = CreditItem.objects.get(line__card_no=on_credit)
        assert (item.kind, item.amount_fen, item.payee) == ("merchant", 1250, "hz-canteen (hangzhou)")
        assert item.payment_id.startswith("roam:hangzhou-")
        assert sel.owed_fen(sel.line_of_card(card_no=on_credit)) == 1250
        assert LedgerAccount.objects.get(card_no=from_account).balance_fen == 200
        assert LedgerAccount.objects.get(card_no=poor).balance_fen == 100
        # payable to Hangzhou 2050 less the issuer's fee, then paid at the cycle's settlement (its file came)
        assert LedgerAccount.objects.get(code="interop:hangzhou").balance_fen == 0
        assert LedgerAccount.objects.get(code=SETTLEMENT_BANK).balance_fen == 2050 - 6
        assert LedgerAccount.objects.get(code="fee:interchange").balance_fen == 6
        assert dict(IssuerRejection.objects.values_list("card_no", "reason")) == {
            poor: "no_funds",
            forged: "code_invalid",
            purse: "tac_invalid",
        }
        assert not RoamingFare.objects.exists()  # a merchant payment is no fare
        assert [e.kind for e in sel.history(card_no=on_credit)] == ["merchant"]
        # validated again (the same records, as a lost answer is asked again): nothing booked twice
        again = [
            {**r.data, "record_id": r.record_id, "acquirer": "hangzhou"}
            for r in records.filter(card_no__in=[on_credit, from_account])
        ]
        assert credit.roaming_code_payments_book(again, timezone.now()) == []
        assert RoamingPayment.objects.count() == 2 and CreditItem.objects.count() == 1
        assert_balanced()

    # The acquirer's books (Hangzhou): the rejected payments reversed from the receivable from Jiaxing — the
    # shop's from its payable (its day still open), the canteen's (settled already) to a receivable from it.
    with tenant_context(hangzhou):
        rejected = {
            p.card_no: (p.rejection_reason, p.charged_back_from)
            for p in Payment.objects.filter(rejected_at__isnull=False)
        }
        assert rejected == {poor: ("no_funds", "receivable"), purse: ("tac_invalid", "payable")}
        # the receivable from Jiaxing, its rejections reversed, then paid at the cycle's settlement
        assert LedgerAccount.objects.get(code="interop:jiaxing").balance_fen == 0
        assert LedgerAccount.objects.get(code=SETTLEMENT_BANK).balance_fen == -(2050 - 7)
        assert LedgerAccount.objects.get(code="merchant:hz-shop").balance_fen == 800
        assert LedgerAccount.objects.get(code="merchant:hz-canteen").balance_fen == 0
        assert LedgerAccount.objects.get(code="chargeback:hz-canteen").balance_fen == -600
        reversals = Posting.objects.filter(idempotency_key__startswith="merchant-reject:")
        assert reversals.count() == 2
        assert all(sum(leg.amount_fen for leg in p.legs.all()) == 0 for p in reversals)
        # the file delivered or read again books nothing again
        message = InboxMessage.objects.get(message_id=f"rcn-{cycle.label}-hangzhou")
        manifest, text = reconciliation_file(message_id=message.message_id)
        assert (
            merchants.merchant_roaming_rejections_book(
                manifest, reconciliation_parse(text)[1], timezone.now()
            )
            == 0
        )
        assert reversals.count() == 2
        # the shop's day settles without the charged-back purchase; its statement shows it
        shop_day = merchants.merchant_settle(merchant_code="hz-shop", day=yesterday, actor="t")
        assert (shop_day.payments, shop_day.gross_fen, shop_day.fee_fen, shop_day.net_fen) == (1, 800, 5, 795)
        statement = merchant_sel.statement_get(merchant_code="hz-shop", day=yesterday)
        kinds = sorted((line.kind, line.amount_fen, line.rejection) for line in statement.lines)
        assert kinds == [
            ("chargeback", -450, "tac_invalid"),
            ("payment", 450, "tac_invalid"),
            ("payment", 800, ""),
        ]
        assert sum(line.amount_fen for line in statement.lines) == shop_day.gross_fen
        assert Settlement.objects.get(merchant__code="hz-canteen", day=yesterday).net_fen == 1850 - 11
        assert_balanced()
    connection.set_schema_to_public()

    # What Hangzhou's finance clerk reads (Chinese first): the statement's chargeback with the issuer's
    # reason, the payments with theirs, and what the canteen owes back.
    clerk = Client()
    clerk.force_login(
        user_create(
            username="hz-clerk-rp", role="city_admin", tenant_code="hangzhou", password="a-long-password-1"
        )
    )
    page = clerk.get(f"/merchants/settlement/hz-shop/{yesterday}/", **HZ).content.decode()
    assert "拒付扣回" in page and "TAC 校验不通过" in page and "-¥4.50" in page
    payments = clerk.get("/admin/merchants/payment/", **HZ).content.decode()
    assert "持卡人信用额度与账户余额均不足" in payments and "应收商户款（已结算）" in payments
    owed = clerk.get("/admin/merchants/merchant/", **HZ).content.decode()
    assert "应退回（结算后拒付）" in owed and "¥6.00" in owed
