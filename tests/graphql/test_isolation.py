"""The isolation probe: for every field of the tenant schema, a key of Hangzhou asking for Jiaxing's
objects (by id, number or cursor) gets nothing of Jiaxing's. A field added without a probe fails here."""

from __future__ import annotations

import datetime as dt

import pytest
from django_tenants.utils import tenant_context

from citycard.graphql.api import tenant_schema

from .conftest import People, data_of, gql, issue

pytestmark = pytest.mark.django_db


def probes(
    jx_card: str, jx_terminal: str, jx_tx_cursor: str, jx_terminal_cursor: str, jx: People, jx_cursors: dict
) -> dict[str, list[str]]:
    tx_nodes = "{ edges { node { cardNumber terminalId } } }"
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
    }


JX_CLAIM = "JX-ZY-0001"


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


def test_every_tenant_field_is_probed_and_leaks_nothing(
    client, tenant, hz_fleet, jx_fleet, hz_people, jx_people
):
    jx, _, _ = jx_fleet
    jx_medical_claim(tenant, jx_people)
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

    schema = tenant_schema.graphql_schema
    fields = set(schema.query_type.fields) | set(schema.mutation_type.fields)
    table = probes(jx.cards[0], jx.terminal_id, jx_tx_cursor, jx_terminal_cursor, jx_people, jx_cursors)
    assert fields == set(table), f"add an isolation probe for: {sorted(fields ^ set(table))}"

    jiaxing = tenant("jiaxing")
    before = jx_state(jiaxing)
    hz_token = issue("hangzhou")
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
        card_number_of_shanghai_patient(),
    ]  # (ids are per tenant: equal ids are no leak)
    for field, queries in table.items():
        for query in queries:
            response = gql(client, "hangzhou", query, token=hz_token)
            body = response.content.decode()
            assert "errors" not in response.json(), (field, body)
            leaked = [s for s in secrets if s in body]
            assert not leaked, f"{field}: {query} leaked {leaked}"
    assert jx_state(jiaxing) == before, "a Hangzhou key changed something of Jiaxing's"


def card_number_of_shanghai_patient() -> str:
    from citycard.tenants.terminals.simulate import card_number

    return card_number("310000", 31)


def jx_state(jiaxing) -> list:
    from citycard.tenants.cards.models import Card, HotlistEntry
    from citycard.tenants.exchange.models import OutboxMessage
    from citycard.tenants.medical.models import Claim

    with tenant_context(jiaxing):
        return [
            *Card.objects.order_by("card_no").values_list("card_no", "state"),
            *HotlistEntry.objects.values_list("card_no", "removed_at"),
            *Claim.objects.order_by("claim_id").values_list("claim_id", "total_fen", "request_sha256"),
            *OutboxMessage.objects.order_by("message_id").values_list("message_id", "body_sha256"),
        ]


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
