"""The isolation probe: for every field of the tenant schema, a key of Hangzhou asking for Jiaxing's
objects (by id, number or cursor) gets nothing of Jiaxing's. A field added without a probe fails here."""

from __future__ import annotations

import pytest

from citycard.graphql.api import tenant_schema

from .conftest import data_of, gql, issue

pytestmark = pytest.mark.django_db


def probes(
    jx_card: str, jx_terminal: str, jx_tx_cursor: str, jx_terminal_cursor: str
) -> dict[str, list[str]]:
    tx_nodes = "{ edges { node { cardNumber terminalId } } }"
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
    }


def test_every_tenant_field_is_probed_and_leaks_nothing(client, hz_fleet, jx_fleet):
    jx, _, _ = jx_fleet
    jx_token = issue("jiaxing")
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

    fields = set(tenant_schema.graphql_schema.query_type.fields)
    table = probes(jx.cards[0], jx.terminal_id, jx_tx_cursor, jx_terminal_cursor)
    assert fields == set(table), f"add an isolation probe for: {sorted(fields ^ set(table))}"
    assert tenant_schema.graphql_schema.mutation_type is None, "add isolation probes for the tenant mutations"

    hz_token = issue("hangzhou")
    secrets = [*jx.cards, jx.terminal_id, "330400", "jiaxing"]  # (ids are per tenant: equal ids are no leak)
    for field, queries in table.items():
        for query in queries:
            body = gql(client, "hangzhou", query, token=hz_token).content.decode()
            assert '"errors"' not in body, (field, body)
            leaked = [s for s in secrets if s in body]
            assert not leaked, f"{field}: {query} leaked {leaked}"
