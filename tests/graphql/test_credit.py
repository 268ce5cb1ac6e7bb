"""Partner apps and credit pay-later over GraphQL: paying a merchant on credit (a retry pays once; beyond the
limit an error as data with nothing written), the card's bill of a month with its items, and its history."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from django_tenants.utils import tenant_context

from citycard.terminal_kit.beijing import BEIJING

from .conftest import data_of, gql, issue

pytestmark = pytest.mark.django_db

PAY = """mutation($m: String!, $card: String!, $a: Int!, $k: String!) {
  creditPay(merchant: $m, cardNumber: $card, amountFen: $a, requestKey: $k) {
    item { kind payee amountFen month } errors { field code message } } }"""
BILL = """query($card: String!, $month: String) { creditBill(cardNumber: $card, month: $month) {
  month itemsFen fullDueFen minimumDueFen paidFen outstandingFen dueOn state items { kind payee amountFen } } }"""
HISTORY = """query($card: String!) { creditHistory(cardNumber: $card) {
  state limitFen owedFen availableFen entries { kind description amountFen } } }"""


@pytest.fixture
def credit_line(tenant, hz_people):
    from citycard.tenants.credit import services as credit
    from citycard.tenants.merchants import services as m

    with tenant_context(tenant("hangzhou")):
        credit.credit_rules_set(actor="t", limit_fen=10_000, active_months=0, require_insured=False)
        credit.credit_grant(card_no=hz_people.elderly_card, actor="t")
        m.merchant_onboard(
            code="hubin-parking",
            name="湖滨停车场",
            licence_no="91330102MA28HB7Q24",
            category="7523",
            settlement_bank="杭州银行",
            settlement_account="6222020200001234999",
            fee_bps=30,
            accepted_means=["account", "credit"],
            actor="t",
        )
        last_month = timezone.now().astimezone(BEIJING).date().replace(day=1) - dt.timedelta(days=1)
        credit.credit_pay(
            merchant_code="hubin-parking",
            card_no=hz_people.elderly_card,
            amount_fen=800,
            payment_id="last-month-parking",
            actor="t",
            at=dt.datetime.combine(last_month, dt.time(19), tzinfo=BEIJING),
        )
        credit.credit_bills_generate(month=last_month.strftime("%Y-%m"), actor="t")
    return hz_people.elderly_card, last_month.strftime("%Y-%m"), hz_people.plain_card


def test_pay_on_credit_bill_and_history(client, credit_line):
    card, month, no_line = credit_line
    token = issue("hangzhou")
    variables = {"m": "hubin-parking", "card": card, "a": 1500, "k": "park-1"}
    first = data_of(gql(client, "hangzhou", PAY, variables, token=token))["creditPay"]
    assert (
        first["errors"] == [] and first["item"]["amountFen"] == 1500 and first["item"]["kind"] == "merchant"
    )
    assert data_of(gql(client, "hangzhou", PAY, variables, token=token))["creditPay"] == first
    over = data_of(gql(client, "hangzhou", PAY, {**variables, "a": 7701, "k": "park-2"}, token=token))
    assert [e["code"] for e in over["creditPay"]["errors"]] == ["OVER_LIMIT"] and over["creditPay"][
        "item"
    ] is None

    bill = data_of(gql(client, "hangzhou", BILL, {"card": card, "month": month}, token=token))["creditBill"]
    assert bill["month"] == month and bill["fullDueFen"] == 800 and bill["minimumDueFen"] == 80
    assert bill["state"] == "open" and bill["items"] == [
        {"kind": "merchant", "payee": "湖滨停车场", "amountFen": 800}
    ]
    history = data_of(gql(client, "hangzhou", HISTORY, {"card": card}, token=token))["creditHistory"]
    assert (history["owedFen"], history["availableFen"], history["limitFen"]) == (2300, 7700, 10_000)
    assert [e["amountFen"] for e in history["entries"]] == [1500, 800]
    nobody = data_of(gql(client, "hangzhou", HISTORY, {"card": no_line}, token=token))
    assert nobody["creditHistory"] is None
