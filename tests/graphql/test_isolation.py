"""The isolation probe: for every field of the tenant schema, a key of Hangzhou asking for Jiaxing's
objects (by id, number or cursor) gets nothing of Jiaxing's. A field added without a probe fails here."""

from __future__ import annotations

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
    }


def test_every_tenant_field_is_probed_and_leaks_nothing(
    client, tenant, hz_fleet, jx_fleet, hz_people, jx_people
):
    jx, _, _ = jx_fleet
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
    ]  # (ids are per tenant: equal ids are no leak)
    for field, queries in table.items():
        for query in queries:
            response = gql(client, "hangzhou", query, token=hz_token)
            body = response.content.decode()
            assert "errors" not in response.json(), (field, body)
            leaked = [s for s in secrets if s in body]
            assert not leaked, f"{field}: {query} leaked {leaked}"
    assert jx_state(jiaxing) == before, "a Hangzhou key changed something of Jiaxing's"


def jx_state(jiaxing) -> list:
    from citycard.tenants.cards.models import Card, HotlistEntry

    with tenant_context(jiaxing):
        return [
            *Card.objects.order_by("card_no").values_list("card_no", "state"),
            *HotlistEntry.objects.values_list("card_no", "removed_at"),
        ]
