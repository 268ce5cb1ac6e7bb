"""The isolation probe, over every query field and mutation of both schemas as the endpoints serve them
(introspected, with the scopes each declares in its description), so a field added without a case fails here:

- tenant endpoint: a key of Hangzhou asking for Jiaxing's objects (by id, number or cursor) gets nothing of
  Jiaxing's, and a key without a field's scopes gets PERMISSION_DENIED and nothing else;
- platform endpoint: a partner app's key, a city administrator, a county officer, a platform key without
  the field's scopes and a platform role without them are all refused, and nothing changes.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django_tenants.utils import tenant_context

from citycard.interop.models import AgreementVersion, ClearingCycle, Dispute
from citycard.platform import services
from citycard.platform.models import Tenant
from citycard.platform.scopes import PLATFORM_ROLE_SCOPES, PlatformScope

from .conftest import ALL_SCOPES, People, codes_of, data_of, gql, issue

pytestmark = pytest.mark.django_db

INTROSPECT = """{ __schema { queryType { fields { name description } }
  mutationType { fields { name description } } } }"""
SCOPES = re.compile(r"Requires scope: ([^.]+)\.")
# Fields any caller the endpoint lets in may use: they describe the caller itself.
PUBLIC = {"me"}


def root_fields(client, host: str, token: str | None = None) -> dict[str, tuple[str, ...]]:
    """Every query field and mutation ``host``'s endpoint serves, with the scopes it requires (none for a public
    field), read by introspection as a client would."""
    schema = data_of(gql(client, host, INTROSPECT, token=token))["__schema"]
    fields = {}
    for field in [*schema["queryType"]["fields"], *schema["mutationType"]["fields"]]:
        found = SCOPES.search(field["description"] or "")
        fields[field["name"]] = tuple(s.strip() for s in found.group(1).split(",")) if found else ()
    return fields


@pytest.fixture(autouse=True)
def _introspection_and_room_to_fail(settings):
    settings.GRAPHQL_INTROSPECTION = True
    # The probes are refused on purpose, many times over from one address.
    settings.GRAPHQL_AUTH_FAILURES = 10_000


def probes(
    jx_card: str, jx_terminal: str, jx_tx_cursor: str, jx_terminal_cursor: str, jx: People, jx_cursors: dict
) -> dict[str, list[str]]:
    tx_nodes = (
        "{ edges { node { cardNumber terminalId "
        "journey { origin status released releasedAt releasedTransactionId } } } }"
    )
    card_fields = (
        "number state named applications validFrom expiresOn scheme { code nameZh } "
        "balance { accountFen purseShadowFen } transactions(first: 100) { edges { node { id cardNumber } } }"
    )
    payments = "{ edges { node { id amountFen programme { code name } items { item amountFen } } } }"
    points = "{ edges { node { code name address department { code name } } } }"
    return {
        "me": ["{ me { keyId tenant { code divisionCode } } }"],
        "terminals": [
            "{ terminals(first: 100) { edges { node { terminalId operator } } } }",
            f'{{ terminals(first: 100, after: "{jx_terminal_cursor}") {{ edges {{ node {{ terminalId }} }} }} }}',
            f'{{ terminals(last: 100, before: "{jx_terminal_cursor}") {{ edges {{ node {{ terminalId }} }} }} }}',
        ],
        "terminal": [f'{{ terminal(terminalId: "{jx_terminal}") {{ terminalId operator }} }}'],
        "transactions": [
            f'{{ transactions(first: 100, filter: {{cardNumber: "{jx_card}"}}) {tx_nodes} }}',
            f'{{ transactions(first: 100, filter: {{terminalId: "{jx_terminal}"}}) {{ edges {{ node {{ id }} }} }} }}',
            f'{{ transactions(first: 100, after: "{jx_tx_cursor}") {tx_nodes} }}',
            f'{{ transactions(last: 100, before: "{jx_tx_cursor}") {tx_nodes} }}',
        ],
        "cardTransactions": [
            f'{{ cardTransactions(cardNumber: "{jx_card}", first: 100) {{ edges {{ node {{ id cardNumber }} }} }} }}',
            f'{{ cardTransactions(cardNumber: "{jx_card}", last: 100, before: "{jx_tx_cursor}") '
            "{ edges { node { id } } } }",
        ],
        "card": [
            f'{{ card(number: "{jx.elderly_card}") {{ {card_fields} }} }}',
            f'{{ card(number: "{jx.anonymous_card}") {{ number state }} }}',
        ],
        # (the answer echoes the number asked about: only "matches" is probed)
        "cardholderVerify": [
            f'{{ cardholderVerify(cardNumber: "{jx.elderly_card}", idNumber: "{jx.elderly_id}") {{ matches }} }}',
            f'{{ cardholderVerify(cardNumber: "{jx.plain_card}", idNumber: "{jx.plain_id}") {{ matches }} }}',
        ],
        "cardholderCategories": [
            f'{{ cardholderCategories(cardNumber: "{jx.elderly_card}", onDate: "2026-03-02") '
            "{ categories { code validFrom } concessions { ruleId name } fareRulesOwner } }",
        ],
        "subsidyPayments": [
            f'{{ subsidyPayments(cardNumber: "{jx.elderly_card}", first: 100) {payments} }}',
            f'{{ subsidyPayments(cardNumber: "{jx.elderly_card}", first: 100, after: "{jx_cursors["payment"]}") '
            f"{payments} }}",
        ],
        "servicePoints": [
            f"{{ servicePoints(first: 100) {points} }}",
            f'{{ servicePoints(first: 100, after: "{jx_cursors["point"]}") {points} }}',
            f'{{ servicePoints(last: 100, before: "{jx_cursors["point"]}") {points} }}',
            f'{{ servicePoints(first: 100, filter: {{text: "jx"}}) {points} }}',
        ],
        "cardReportLost": [
            f'mutation {{ cardReportLost(cardNumber: "{jx.elderly_card}", idNumber: "{jx.elderly_id}") '
            "{ card { number state } reportedAt errors { field message code } } }",
        ],
        "cardApply": [
            f'mutation {{ cardApply(schemeCode: "04", idNumber: "{jx.plain_id}", requestKey: "probe-1") '
            "{ card { number state } errors { field message code } } }",
        ],
        # Jiaxing's cards and service points are not Hangzhou's: null, NOT_FOUND, nothing paid or recorded.
        "cardEntitlements": [
            f'{{ cardEntitlements(cardNumber: "{jx.elderly_card}", includeRevoked: true) '
            "{ entitlements { id source type { code name department } } } }",
        ],
        "entitlementBuy": [
            f'mutation {{ entitlementBuy(cardNumber: "{jx.elderly_card}", entitlementType: "jx-park-pass", '
            'requestKey: "probe-1") { entitlement { id type { code } } errors { field message code } } }',
        ],
        "acceptanceCheck": [
            f'mutation {{ acceptanceCheck(servicePoint: "{jx.service_points[0]}", cardNumber: "{jx.elderly_card}") '
            "{ decision { allowed reason maskedName entitlementType } errors { field message code } } }",
        ],
        # Jiaxing's hospital submitted JX_CLAIM (see jx_medical_claim); claim ids are per key and tenant.
        "medicalClaim": [
            f'{{ medicalClaim(claimId: "{JX_CLAIM}") {{ claimId cardNumber hospital totalFen status '
            "lines { code name } } }",
        ],
        # A Hangzhou claim with Jiaxing's claim id for Jiaxing's card: Hangzhou's own, nothing of Jiaxing's
        # (the card number is echoed by cardNumber: only what is Hangzhou's is asked for).
        "medicalClaimSubmit": [
            f'mutation {{ medicalClaimSubmit(claimId: "{JX_CLAIM}", cardNumber: "{jx.elderly_card}", '
            'treatedAt: "2026-03-02T09:00:00+08:00", items: [{code: "JX-D1", quantity: 1, unitPriceFen: 100}]) '
            "{ alreadySubmitted claim { claimId hospital status totalFen lines { code outcome } } "
            "errors { field message code } } }",
        ],
        # Jiaxing's canteen took a payment from Jiaxing's elderly card (jx_merchant_payment): a Hangzhou key
        # can neither pay that merchant, nor refund that payment, nor list it.
        "merchantPay": [
            f'mutation {{ merchantPay(merchant: "jx-canteen", cardNumber: "{jx.elderly_card}", amountFen: 100, '
            'requestKey: "probe-pay") { payment { id merchant merchantName amountFen } '
            "errors { field message code } } }",
        ],
        "merchantRefund": [
            'mutation { merchantRefund(paymentKey: "jx-meal-1", refundKey: "probe-r", amountFen: 50) '
            "{ refund { id amountFen payment { merchant merchantName } } errors { field message code } } }",
        ],
        "cardMerchantPayments": [
            f'{{ cardMerchantPayments(cardNumber: "{jx.elderly_card}") '
            "{ id merchant merchantName amountFen means acquirer } }",
        ],
        # Jiaxing's elderly card has a credit line, a parking fee on it and last month's bill (jx_credit): a
        # Hangzhou key reads no bill nor history of it and cannot pay on it.
        "creditBill": [
            f'{{ creditBill(cardNumber: "{jx.elderly_card}") {{ month fullDueFen items {{ payee amountFen }} }} }}',
        ],
        "creditHistory": [
            f'{{ creditHistory(cardNumber: "{jx.elderly_card}") {{ owedFen limitFen entries {{ amountFen }} }} }}',
        ],
        "creditPay": [
            f'mutation {{ creditPay(merchant: "jx-parking", cardNumber: "{jx.elderly_card}", amountFen: 100, '
            'requestKey: "probe-credit") { item { payee amountFen } errors { field message code } } }',
        ],
        # Jiaxing's top-up order (jx_topup_order) is not Hangzhou's, nor its channel: null, NO_CHANNEL.
        "topupOrder": [
            f'{{ topupOrder(orderNo: "{jx_cursors["topup"]}") {{ orderNo cardNumber amountFen paymentParams }} }}',
        ],
        "topupOrderCreate": [
            f'mutation {{ topupOrderCreate(channel: "wechat", cardNumber: "{jx.elderly_card}", amountFen: 100, '
            'requestKey: "probe-1") { order { orderNo paymentParams } errors { field message code } } }',
        ],
        # Refunding Jiaxing's order from a Hangzhou key: NOT_FOUND, nothing refunded.
        "topupOrderRefund": [
            f'mutation {{ topupOrderRefund(orderNo: "{jx_cursors["topup"]}", amountFen: 100, '
            'requestKey: "probe-r") { refund { refundNo amountFen } errors { field message code } } }',
        ],
    }


JX_CLAIM = "JX-ZY-0001"


def jx_merchant_payment(tenant, people: People) -> None:
    """Jiaxing's canteen, and a payment of 1.00 to it from Jiaxing's elderly card (payment id jx-meal-1)."""
    from citycard.tenants.merchants import services as merchants

    with tenant_context(tenant("jiaxing")):
        merchants.merchant_onboard(
            code="jx-canteen",
            name="嘉兴学院食堂",
            licence_no=merchants.licence_no_build(division="330400", organisation="MA0000077"),
            category="5814",
            settlement_bank="嘉兴银行",
            settlement_account="6222020000123456789",
            fee_bps=60,
            accepted_means=["account", "code"],
            actor="test",
        )
        merchants.merchant_pay(
            merchant_code="jx-canteen",
            card_no=people.elderly_card,
            amount_fen=100,
            payment_id="jx-meal-1",
            actor="test",
        )


def jx_credit(tenant, people: People) -> None:
    """Jiaxing's credit rules, a line on its elderly card, a car park taking credit, a fee on credit last month
    and that month's bill."""
    from citycard.tenants.credit import services as credit
    from citycard.tenants.merchants import services as merchants

    with tenant_context(tenant("jiaxing")):
        credit.credit_rules_set(actor="test", active_months=0, require_insured=False, birth_decade_min=1900)
        credit.credit_grant(card_no=people.elderly_card, actor="test")
        merchants.merchant_onboard(
            code="jx-parking",
            name="南湖停车场",
            licence_no=merchants.licence_no_build(division="330400", organisation="MA0000078"),
            category="7523",
            settlement_bank="嘉兴银行",
            settlement_account="6222020000123456780",
            fee_bps=60,
            accepted_means=["account", "credit"],
            actor="test",
        )
        first = dt.datetime.now(tz=dt.timezone(dt.timedelta(hours=8))).date().replace(day=1)
        last_month = first - dt.timedelta(days=1)
        credit.credit_pay(
            merchant_code="jx-parking", card_no=people.elderly_card, amount_fen=700, payment_id="jx-park-1",
            actor="test", at=dt.datetime.combine(last_month, dt.time(19), tzinfo=dt.timezone(dt.timedelta(hours=8))),
        )  # fmt: skip
        credit.credit_bills_generate(month=last_month.strftime("%Y-%m"), actor="test")


def jx_topup_order(tenant, people: People, token: str) -> str:
    """A top-up order Jiaxing's own key opened through its WeChat Pay channel (a local sandbox); its number."""
    from citycard.tenants.accounts.services import account_open
    from citycard.tenants.payments import services as payments
    from citycard.tenants.payments.sandboxes import Sandbox

    with (
        tenant_context(tenant("jiaxing")),
        Sandbox.start("wechat", merchant_id="1900000109", app_id="wxjx") as box,
    ):
        config = box.merchant_config(notify_url="http://127.0.0.1:9/payments/notify/wechat")
        payments.channel_configure(
            code="wechat", provider="wechat", name="微信支付", merchant_id=config.merchant_id, app_id=config.app_id,
            gateway_url=config.gateway_url, notify_url=config.notify_url, private_key_pem=config.private_key_pem,
            provider_public_key_pem=config.peer_public_key_pem, secret=config.secret, actor="test",
        )  # fmt: skip
        account_open(card_no=people.elderly_card, actor="test")
        order = payments.topup_order_create(
            channel_code="wechat", card_no=people.elderly_card, amount_fen=100,
            request_key=f"{services.api_key_parse(token)}:probe-1", actor="test",
        )  # fmt: skip
        return order.out_trade_no


def jx_medical_claim(tenant, people: People) -> None:
    """A Jiaxing hospital's claim for a Shanghai card (yrd), with an item of Jiaxing's catalogue."""
    from citycard.tenants.medical import services as medical
    from citycard.tenants.terminals.simulate import card_number

    with tenant_context(tenant("jiaxing")):
        medical.catalogue_item_save(
            code="JX-D1", name="嘉兴目录药", category="drug", unit_price_fen=888, coverage="A", actor="test"
        )
        medical.claim_submit(
            claim_no=JX_CLAIM,
            card_no=card_number("310000", 31),
            department="嘉兴第一医院",
            treated_at=dt.datetime(2026, 3, 2, 9, tzinfo=dt.timezone(dt.timedelta(hours=8))),
            items=[("JX-D1", 1)],
            actor="test",
        )


@pytest.fixture
def tenant_probes(client, tenant, hz_fleet, jx_fleet, hz_people, jx_people) -> dict[str, list[str]]:
    """The tenant probe table, filled with Jiaxing's card numbers, terminal and cursors."""
    jx, _, _ = jx_fleet
    jx_medical_claim(tenant, jx_people)
    jx_merchant_payment(tenant, jx_people)
    jx_credit(tenant, jx_people)
    jx_token = issue("jiaxing")
    jx_own = data_of(
        gql(
            client,
            "jiaxing",
            f'{{ subsidyPayments(cardNumber: "{jx_people.elderly_card}", first: 1) {{ edges {{ cursor }} }} '
            "servicePoints(first: 1) { edges { cursor } } }",
            token=jx_token,
        )
    )
    jx_cursors = {
        "payment": jx_own["subsidyPayments"]["edges"][0]["cursor"],
        "point": jx_own["servicePoints"]["edges"][0]["cursor"],
        "topup": jx_topup_order(tenant, jx_people, jx_token),
    }
    jx_view = data_of(
        gql(
            client,
            "jiaxing",
            "{ transactions(first: 1) { edges { cursor node { id } } } "
            "terminals(first: 1) { edges { cursor } } }",
            token=jx_token,
        )
    )
    jx_tx_cursor = jx_view["transactions"]["edges"][0]["cursor"]
    jx_terminal_cursor = jx_view["terminals"]["edges"][0]["cursor"]
    tables = probes(jx.cards[0], jx.terminal_id, jx_tx_cursor, jx_terminal_cursor, jx_people, jx_cursors)
    JX_SECRETS[:] = [jx_cursors["topup"]]
    return tables


JX_SECRETS: list[str] = []  # Jiaxing's values made by the fixture (its top-up order's number)


def test_every_tenant_field_is_probed_and_leaks_nothing(client, tenant, jx_fleet, jx_people, tenant_probes):
    jx, _, _ = jx_fleet
    hz_token = issue("hangzhou")
    fields = root_fields(client, "hangzhou", hz_token)
    assert set(fields) == set(tenant_probes), (
        f"add an isolation probe for: {sorted(set(fields) ^ set(tenant_probes))}"
    )
    assert {f for f, scopes in fields.items() if not scopes} == PUBLIC, "a field without a scope: declare one"

    jiaxing = tenant("jiaxing")
    before = jx_state(jiaxing)
    secrets = [
        *jx.cards,
        jx.terminal_id,
        "330400",
        "jiaxing",
        jx_people.elderly_card,
        jx_people.plain_card,
        jx_people.anonymous_card,
        jx_people.elderly_id,
        jx_people.plain_id,
        *jx_people.service_points,
        "jx-hrss",
        "jx 人社局",
        "嘉兴第一医院",
        "嘉兴目录药",
        "888",
        "嘉兴学院食堂",
        card_number_of_shanghai_patient(),
        *JX_SECRETS,
    ]  # (ids are per tenant: equal ids are no leak)
    for field, queries in tenant_probes.items():
        for query in queries:
            response = gql(client, "hangzhou", query, token=hz_token)
            body = response.content.decode()
            assert "errors" not in response.json(), (field, body)
            leaked = [s for s in secrets if s in body]
            assert not leaked, f"{field}: {query} leaked {leaked}"
    assert jx_state(jiaxing) == before, "a Hangzhou key changed something of Jiaxing's"


def test_every_tenant_field_refuses_a_key_without_its_scopes(client, tenant, tenant_probes):
    fields = root_fields(client, "hangzhou", issue("hangzhou"))
    assert set(fields) == set(tenant_probes)
    jiaxing, hangzhou = tenant("jiaxing"), tenant("hangzhou")
    before = jx_state(jiaxing), jx_state(hangzhou)
    for field, scopes in fields.items():
        if not scopes:
            continue
        token = issue("hangzhou", [s for s in ALL_SCOPES if s not in scopes], name=f"without {field}")
        for query in tenant_probes[field]:
            response = gql(client, "hangzhou", query, token=token)
            body = response.json()
            assert (response.status_code, codes_of(response)) == (200, ["PERMISSION_DENIED"]), (field, body)
            assert body["errors"][0]["extensions"]["required"] == list(scopes), field
            assert body["data"] in ({field: None}, None), field  # (null bubbles up from a non-null field)
    narrow = issue("hangzhou", ["service_points:read"])
    me = data_of(gql(client, "hangzhou", "{ me { keyId tenant { code } } }", token=narrow))["me"]
    # the public field describes the caller's own key, whatever its scopes
    assert me == {"keyId": services.api_key_parse(narrow), "tenant": {"code": "hangzhou"}}
    assert (jx_state(jiaxing), jx_state(hangzhou)) == before


def card_number_of_shanghai_patient() -> str:
    from citycard.tenants.terminals.simulate import card_number

    return card_number("310000", 31)


def jx_state(jiaxing) -> list:
    from citycard.tenants.accounts.models import LedgerAccount
    from citycard.tenants.cards.models import Card, HotlistEntry
    from citycard.tenants.exchange.models import OutboxMessage
    from citycard.tenants.medical.models import Claim
    from citycard.tenants.merchants.models import Payment, Refund
    from citycard.tenants.payments.models import TopupOrder

    with tenant_context(jiaxing):
        return [
            *Payment.objects.order_by("payment_id").values_list("payment_id", "amount_fen", "refunded_fen"),
            *Refund.objects.order_by("refund_id").values_list("refund_id", "amount_fen"),
            *LedgerAccount.objects.order_by("code").values_list("code", "balance_fen"),
            *Card.objects.order_by("card_no").values_list("card_no", "state"),
            *HotlistEntry.objects.values_list("card_no", "removed_at"),
            *Claim.objects.order_by("claim_id").values_list("claim_id", "total_fen", "request_sha256"),
            *OutboxMessage.objects.order_by("message_id").values_list("message_id", "body_sha256"),
            *TopupOrder.objects.order_by("out_trade_no").values_list("out_trade_no", "state", "amount_fen"),
        ]


# --- the platform endpoint ---------------------------------------------------------------------------------------


def platform_probes() -> dict[str, str]:
    """One operation per field of the platform schema (query and mutation)."""
    return {
        "me": "{ me { username } }",
        "tenants": "{ tenants(first: 5) { edges { node { code } } } }",
        "tenant": '{ tenant(code: "jiaxing") { code } }',
        "roamingNetworks": "{ roamingNetworks { code } }",
        "roamingNetwork": '{ roamingNetwork(code: "yrd") { code } }',
        "roamingAgreements": "{ roamingAgreements { operator } }",
        "clearingCycles": "{ clearingCycles(first: 5) { edges { node { label } } } }",
        "clearingCycle": '{ clearingCycle(network: "yrd", service: TRANSIT, businessDate: "2026-11-21") '
        "{ label netPositions { sumFen } records(first: 5) { edges { node { cardNumber } } } "
        "bilateralCells(first: 5, order: AMOUNT_DESC) { edges { node { issuer amountFen } } } "
        'exceptionSummary(reason: "tac_invalid") { issuer acquirer records } '
        "exceptionGroups(first: 5) { edges { node { issuer acquirer reason amountFen } } } } }",
        "disputes": "{ disputes(first: 5) { edges { node { id record { cardNumber } } } } }",
        "dispute": '{ dispute(id: "RGlzcHV0ZTox") { id } }',
        "clearingRecord": '{ clearingRecord(recordId: "jiaxing-1") { recordId cardNumber } }',
        "tenantSuspend": 'mutation { tenantSuspend(code: "jiaxing", reason: "probe") { errors { code } } }',
        "tenantActivate": 'mutation { tenantActivate(code: "jiaxing") { errors { code } } }',
        "clearingCycleClose": 'mutation { clearingCycleClose(network: "yrd", service: TRANSIT, '
        'businessDate: "2026-11-22") { errors { code } } }',
        "clearingCycleValidate": 'mutation { clearingCycleValidate(network: "yrd", service: TRANSIT, '
        'businessDate: "2026-11-22") { errors { code } } }',
        "clearingCycleNet": 'mutation { clearingCycleNet(network: "yrd", service: TRANSIT, '
        'businessDate: "2026-11-22") { errors { code } } }',
        "clearingCycleSettle": 'mutation { clearingCycleSettle(network: "yrd", service: TRANSIT, '
        'businessDate: "2026-11-22") { errors { code } } }',
        "disputeRaise": 'mutation { disputeRaise(recordId: "x", raisedBy: "jiaxing", reason: "probe") '
        "{ errors { code } } }",
        "disputeResolve": 'mutation { disputeResolve(id: "RGlzcHV0ZTox", accept: true, resolution: "probe") '
        "{ errors { code } } }",
        "roamingAgreementVersionAdd": 'mutation { roamingAgreementVersionAdd(network: "yrd", service: TRANSIT, '
        'effectiveFrom: "2026-12-31", networkFeeBps: 99) { errors { code } agreementVersion { label } } }',
    }


def platform_state() -> list:
    return [
        *ClearingCycle.objects.order_by("id").values_list("id", "state"),
        *Dispute.objects.order_by("id").values_list("id", "state"),
        *AgreementVersion.objects.order_by("id").values_list("id", "number"),
        *Tenant.objects.order_by("code").values_list("code", "status"),
    ]


def test_every_platform_field_refuses_partner_keys_tenant_users_and_the_wrong_role(
    client, cleared, fixed_now
):
    users: dict[str, object] = {}

    def sign_in(role: str, tenant_code: str | None = None) -> None:
        client.logout()
        if role not in users:
            users[role] = services.user_create(
                username=f"{role}-probe",
                role=role,
                password="x",
                tenant_code=tenant_code,
                check_password=False,
            )
        client.force_login(users[role])

    sign_in("clearing_staff")
    fields = root_fields(client, "")
    table = platform_probes()
    assert set(fields) == set(table), f"add a platform probe for: {sorted(set(fields) ^ set(table))}"
    assert {f for f, scopes in fields.items() if not scopes} == PUBLIC, "a field without a scope: declare one"
    before = platform_state()

    def refused(response, status: int, code: str, field: str) -> None:
        assert (response.status_code, codes_of(response)) == (status, [code]), (field, response.json())
        assert "data" not in response.json() and "yrd" not in response.content.decode(), field

    # a partner app's key is no platform principal; a tenant's users are not platform users
    client.logout()
    partner = issue("hangzhou")
    for field, query in table.items():
        refused(gql(client, "", query, token=partner), 401, "WRONG_TENANT", field)
    for role, tenant_code in (("city_admin", "hangzhou"), ("county_officer", "tonglu")):
        sign_in(role, tenant_code)
        for field, query in table.items():
            refused(gql(client, "", query), 403, "PERMISSION_DENIED", field)

    def denied(response, field: str, scopes: tuple[str, ...]) -> None:
        body = response.json()
        assert (response.status_code, codes_of(response)) == (200, ["PERMISSION_DENIED"]), (field, body)
        assert body["errors"][0]["extensions"]["required"] == list(scopes) and body["data"] == {field: None}
        assert "yrd" not in response.content.decode(), field

    # a platform key without the field's scopes, and each platform role that lacks them
    client.logout()
    for field, scopes in fields.items():
        if not scopes:
            continue
        key = issue("public", [s for s in PlatformScope.values if s not in scopes], name=f"without {field}")
        denied(gql(client, "", table[field], token=key), field, scopes)
    for role, granted in PLATFORM_ROLE_SCOPES.items():
        sign_in(str(role))
        for field, scopes in fields.items():
            if scopes and not set(scopes) <= granted:
                denied(gql(client, "", table[field]), field, scopes)
    assert platform_state() == before
    # …and the clearing fields are not on the tenant endpoint at all
    response = gql(client, "hangzhou", "{ clearingCycles(first: 1) { edges { cursor } } }", token=partner)
    assert codes_of(response) == ["GRAPHQL_VALIDATION_FAILED"]


def test_medical_claims_need_the_scope_and_stay_with_the_key_that_submitted_them(client, tenant, jx_people):
    """A Jiaxing key without medical:claims is refused both fields; a Jiaxing key with the scope but not
    the one that submitted sees nothing of the hospital's claim (ids are per key)."""
    from citycard.platform.scopes import Scope

    from .conftest import codes_of

    jx_medical_claim(tenant, jx_people)
    without = issue("jiaxing", [s for s in Scope.values if s != Scope.MEDICAL_CLAIMS])
    read = f'{{ medicalClaim(claimId: "{JX_CLAIM}") {{ claimId totalFen }} }}'
    response = gql(client, "jiaxing", read, token=without)
    assert codes_of(response) == ["PERMISSION_DENIED"] and response.json()["data"]["medicalClaim"] is None
    submit = (
        f'mutation {{ medicalClaimSubmit(claimId: "{JX_CLAIM}", cardNumber: "{card_number_of_shanghai_patient()}", '
        'treatedAt: "2026-03-02T09:00:00+08:00", items: [{code: "JX-D1", quantity: 1}]) { claim { claimId } '
        "errors { code } } }"
    )
    before = jx_state(tenant("jiaxing"))
    response = gql(client, "jiaxing", submit, token=without)
    assert (
        codes_of(response) == ["PERMISSION_DENIED"] and response.json()["data"]["medicalClaimSubmit"] is None
    )
    assert jx_state(tenant("jiaxing")) == before
    other_app = issue("jiaxing", [Scope.MEDICAL_CLAIMS], name="another hospital")
    assert data_of(gql(client, "jiaxing", read, token=other_app)) == {"medicalClaim": None}
