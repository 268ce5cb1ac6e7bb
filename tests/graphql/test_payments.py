"""topupOrderCreate / topupOrder: a partner app opens a top-up through the city's WeChat Pay channel (a
local sandbox), gets the provider's signed payment parameters, the same requestKey returns the same order,
the account is credited once when the notification comes, and another key of the same city sees nothing;
topupOrderRefund gives part of it back through the channel, once per requestKey."""

from __future__ import annotations

import pytest
from django_tenants.utils import tenant_context

from citycard.tenants.accounts.selectors import account_of_card
from citycard.tenants.payments import services as payments
from citycard.tenants.payments.models import TopupOrder
from citycard.tenants.payments.sandboxes import NotifyInbox, Sandbox

from .conftest import data_of, gql, issue

pytestmark = pytest.mark.django_db

CREATE = """mutation($card: String!, $key: String!, $amount: Int!) {
  topupOrderCreate(channel: "wechat", cardNumber: $card, amountFen: $amount, requestKey: $key) {
    order { orderNo provider state amountFen paymentParams } errors { field code message } } }"""
REFUND = """mutation($no: String!, $key: String!, $amount: Int!) {
  topupOrderRefund(orderNo: $no, amountFen: $amount, requestKey: $key) {
    refund { refundNo orderNo amountFen state } errors { field code message } } }"""
ORDER = "query($no: String!) { topupOrder(orderNo: $no) { orderNo state paidFen cardNumber } }"


def test_a_partner_app_tops_up_through_wechat_and_reads_its_order(client, tenant, hz_people):
    hangzhou = tenant("hangzhou")
    inbox = NotifyInbox()
    with Sandbox.start("wechat", merchant_id="1900000109", app_id="wxhz") as box:
        with tenant_context(hangzhou):
            config = box.merchant_config(notify_url=f"{inbox.url}/wechat")
            payments.channel_configure(
                code="wechat", provider="wechat", name="微信支付", merchant_id=config.merchant_id,
                app_id=config.app_id, gateway_url=config.gateway_url, notify_url=config.notify_url,
                private_key_pem=config.private_key_pem, provider_public_key_pem=config.peer_public_key_pem,
                secret=config.secret, actor="test",
            )  # fmt: skip
            before = account_of_card(card_no=hz_people.elderly_card).balance_fen
        token = issue("hangzhou", ["topups:create"])
        variables = {"card": hz_people.elderly_card, "key": "app-0001", "amount": 10000}
        first = data_of(gql(client, "hangzhou", CREATE, variables, token=token))["topupOrderCreate"]
        assert first["errors"] == [] and first["order"]["provider"] == "wechat"
        params = first["order"]["paymentParams"]
        assert '"prepayid"' in params and '"sign"' in params
        again = data_of(gql(client, "hangzhou", CREATE, variables, token=token))["topupOrderCreate"]
        assert again["order"] == first["order"]
        conflict = data_of(gql(client, "hangzhou", CREATE, variables | {"amount": 1}, token=token))[
            "topupOrderCreate"
        ]
        assert conflict["order"] is None and conflict["errors"][0]["code"] == "CONFLICT"
        no = first["order"]["orderNo"]

        with tenant_context(hangzhou):
            order = TopupOrder.objects.get(out_trade_no=no)
            box.payer_pays(order.payment_params, replay=1)
            box.settle()
            for headers, body in inbox.drain():
                payments.topup_notification_receive(channel_code="wechat", headers=headers, body=body)
            assert account_of_card(card_no=hz_people.elderly_card).balance_fen == before + 10000
        # A refund through the channel: once per requestKey, never beyond the top-up, not by another key.
        refund_vars = {"no": no, "key": "refund-1", "amount": 3000}
        refunded = data_of(gql(client, "hangzhou", REFUND, refund_vars, token=token))["topupOrderRefund"]
        assert refunded["errors"] == [] and refunded["refund"]["amountFen"] == 3000
        assert refunded["refund"]["orderNo"] == no and refunded["refund"]["state"] == "succeeded"
        again = data_of(gql(client, "hangzhou", REFUND, refund_vars, token=token))["topupOrderRefund"]
        assert again["refund"] == refunded["refund"]
        over = data_of(
            gql(client, "hangzhou", REFUND, refund_vars | {"key": "r2", "amount": 9000}, token=token)
        )
        assert over["topupOrderRefund"]["errors"][0]["code"] == "OVER_REFUND"
        stranger = issue("hangzhou", ["topups:create"], name="a third app")
        foreign = data_of(gql(client, "hangzhou", REFUND, refund_vars | {"key": "r3"}, token=stranger))
        assert foreign["topupOrderRefund"]["errors"][0]["code"] == "NOT_FOUND"
        with tenant_context(hangzhou):
            assert account_of_card(card_no=hz_people.elderly_card).balance_fen == before + 7000
            assert [r["amount_fen"] for r in box.orders[no].refunds] == [3000]
    inbox.stop()
    read = data_of(gql(client, "hangzhou", ORDER, {"no": no}, token=token))["topupOrder"]
    assert read == {"orderNo": no, "state": "paid", "paidFen": 10000, "cardNumber": hz_people.elderly_card}
    other = issue("hangzhou", ["topups:create"], name="another app")
    assert data_of(gql(client, "hangzhou", ORDER, {"no": no}, token=other))["topupOrder"] is None
    missing = data_of(
        gql(
            client,
            "hangzhou",
            CREATE,
            variables | {"key": "x2"} | {"card": hz_people.plain_card},
            token=token,
        )
    )
    assert missing["topupOrderCreate"]["errors"][0]["code"] == "NO_ACCOUNT"
