"""Partner apps pay merchants over GraphQL: from the online account by card number or citizen code, a retry
paying once; refunds in part and in full, never above the payment, only of the key's own payments; the
card's payments listed; errors as data with nothing written."""

from __future__ import annotations

import datetime as dt

import pytest
from django_tenants.utils import tenant_context

from citycard.tenants.accounts.models import LedgerAccount
from citycard.tenants.credit.services import roaming_code_payments_book

from .conftest import data_of, gql, issue

pytestmark = pytest.mark.django_db

PAY = """mutation($m: String!, $a: Int!, $k: String!, $card: String, $code: String) {
  merchantPay(merchant: $m, amountFen: $a, requestKey: $k, cardNumber: $card, citizenCode: $code) {
    payment { merchant merchantName means amountFen refundedFen settled } errors { field code message } } }"""
REFUND = """mutation($p: String!, $r: String!, $a: Int!) {
  merchantRefund(paymentKey: $p, refundKey: $r, amountFen: $a) {
    refund { amountFen payment { amountFen refundedFen } } errors { field code message } } }"""


@pytest.fixture
def canteen(tenant, hz_people):
    from citycard.tenants.merchants import services as m

    with tenant_context(tenant("hangzhou")):
        m.merchant_onboard(
            code="school-12-canteen",
            name="十二中学生食堂",
            licence_no="91330106MA2B3C4D5D",
            category="5814",
            settlement_bank="杭州银行",
            settlement_account="6222020200001234567",
            fee_bps=30,
            accepted_means=["account", "code", "purse"],
            actor="t",
        )
    return hz_people


def test_pay_retry_refund_and_list(client, tenant, canteen):
    token = issue("hangzhou")
    card = canteen.elderly_card
    variables = {"m": "school-12-canteen", "a": 1250, "k": "order-1", "card": card}
    first = data_of(gql(client, "hangzhou", PAY, variables, token=token))["merchantPay"]
    assert first["errors"] == [] and first["payment"] == {
        "merchant": "school-12-canteen",
        "merchantName": "十二中学生食堂",
        "means": "account",
        "amountFen": 1250,
        "refundedFen": 0,
        "settled": False,
    }
    again = data_of(gql(client, "hangzhou", PAY, variables, token=token))["merchantPay"]
    assert again == first
    too_much = data_of(gql(client, "hangzhou", PAY, {**variables, "a": 10**7, "k": "order-2"}, token=token))
    assert [e["code"] for e in too_much["merchantPay"]["errors"]] == ["INSUFFICIENT_FUNDS"]
    unknown = data_of(gql(client, "hangzhou", PAY, {**variables, "m": "nobody", "k": "order-3"}, token=token))
    assert [e["code"] for e in unknown["merchantPay"]["errors"]] == ["NOT_FOUND"]

    part = data_of(gql(client, "hangzhou", REFUND, {"p": "order-1", "r": "ref-1", "a": 250}, token=token))
    assert part["merchantRefund"]["refund"] == {
        "amountFen": 250,
        "payment": {"amountFen": 1250, "refundedFen": 250},
    }
    over = data_of(gql(client, "hangzhou", REFUND, {"p": "order-1", "r": "ref-2", "a": 1001}, token=token))
    assert [e["code"] for e in over["merchantRefund"]["errors"]] == ["OVER_REFUND"]
    rest = data_of(gql(client, "hangzhou", REFUND, {"p": "order-1", "r": "ref-3", "a": 1000}, token=token))
    assert rest["merchantRefund"]["refund"]["payment"]["refundedFen"] == 1250
    # Another key of the same city cannot refund this key's payment.
    other = issue("hangzhou", name="another app")
    theirs = data_of(gql(client, "hangzhou", REFUND, {"p": "order-1", "r": "ref-4", "a": 1}, token=other))
    assert [e["code"] for e in theirs["merchantRefund"]["errors"]] == ["NOT_FOUND"]

    listed = data_of(
        gql(
            client,
            "hangzhou",
            f'{{ cardMerchantPayments(cardNumber: "{card}") {{ merchant amountFen refundedFen }} }}',
            token=token,
        )
    )["cardMerchantPayments"]
    assert listed == [{"merchant": "school-12-canteen", "amountFen": 1250, "refundedFen": 1250}]


def test_pay_by_citizen_code(client, tenant, canteen):
    from citycard.tenants.entitlements.acceptance import citizen_code_issue

    with tenant_context(tenant("hangzhou")):
        code = citizen_code_issue(card_no=canteen.elderly_card)
    token = issue("hangzhou")
    variables = {"m": "school-12-canteen", "a": 800, "k": "qr-1", "code": code}
    paid = data_of(gql(client, "hangzhou", PAY, variables, token=token))["merchantPay"]
    assert paid["payment"]["means"] == "code"
    replay = data_of(gql(client, "hangzhou", PAY, {**variables, "k": "qr-2"}, token=token))["merchantPay"]
    assert [e["code"] for e in replay["errors"]] == ["CODE_REFUSED"]


def test_a_cards_code_payments_in_another_city_are_listed_with_the_acquirer(client, tenant, canteen):
    """The card's citizen-code payment at a Jiaxing merchant, accepted by Hangzhou's clearing validation
    (booked from the online account, payable to Jiaxing), is listed beside its payments here; one the
    account cannot pay is rejected (no_funds) and listed nowhere."""
    card = canteen.elderly_card
    token = issue("hangzhou")
    paid = data_of(
        gql(
            client,
            "hangzhou",
            PAY,
            {"m": "school-12-canteen", "a": 300, "k": "o-9", "card": card},
            token=token,
        )
    )
    assert paid["merchantPay"]["errors"] == []
    record = {
        "record_id": "jiaxing-424242",
        "acquirer": "jiaxing",
        "card_no": card,
        "amount_fen": 450,
        "tapped_at": "2026-03-02T12:00:00+08:00",
        "service": "merchant",
        "route": "jx-canteen",
        "card_scheme": "04",
    }
    now = dt.datetime(2026, 3, 3, 5, tzinfo=dt.UTC)
    with tenant_context(tenant("hangzhou")):
        before = LedgerAccount.objects.get(card_no=card).balance_fen
        assert roaming_code_payments_book([record], now) == []
        assert roaming_code_payments_book([record], now) == []  # validated again: booked once
        poor = {**record, "record_id": "jiaxing-424243", "amount_fen": 10**9}
        assert [r["reason"] for r in roaming_code_payments_book([poor], now)] == ["no_funds"]
        assert LedgerAccount.objects.get(card_no=card).balance_fen == before - 450
        assert LedgerAccount.objects.get(code="interop:jiaxing").balance_fen == 450
    listed = data_of(
        gql(
            client,
            "hangzhou",
            f'{{ cardMerchantPayments(cardNumber: "{card}") {{ merchant merchantName means amountFen acquirer }} }}',
            token=token,
        )
    )["cardMerchantPayments"]
    assert listed == [
        {
            "merchant": "school-12-canteen",
            "merchantName": "十二中学生食堂",
            "means": "account",
            "amountFen": 300,
            "acquirer": None,
        },
        {
            "merchant": "jx-canteen",
            "merchantName": "jx-canteen (jiaxing)",
            "means": "code",
            "amountFen": 450,
            "acquirer": "jiaxing",
        },
    ]
