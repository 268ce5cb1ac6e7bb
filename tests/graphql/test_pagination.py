"""Keyset Relay connections over the month-partitioned transactions: arguments, edges, stability, filters."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django_tenants.utils import tenant_context

from citycard.platform.audit.models import AuditEntry
from citycard.platform.scopes import Scope

from .conftest import BASE, codes_of, data_of, gql, issue, taps_in

pytestmark = pytest.mark.django_db
TX = """query($first: Int, $last: Int, $after: String, $before: String, $filter: TransactionFilterInput) {
  transactions(first: $first, last: $last, after: $after, before: $before, filter: $filter) {
    edges { cursor node { id tappedAt cardNumber cardCounter } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}"""


def page(client, token, **variables):
    return data_of(gql(client, "hangzhou", TX, variables, token=token))["transactions"]


@pytest.fixture
def token():
    return issue("hangzhou", [Scope.TRANSACTIONS_READ, Scope.TERMINALS_READ])


@pytest.mark.parametrize(
    ("variables", "code"),
    [
        ({}, "PAGINATION_REQUIRED"),
        ({"first": 101}, "PAGINATION_LIMIT_EXCEEDED"),
        ({"last": 500}, "PAGINATION_LIMIT_EXCEEDED"),
        ({"first": 0}, "INVALID_ARGUMENT"),
        ({"first": -3}, "INVALID_ARGUMENT"),
        ({"first": 5, "last": 5}, "INVALID_ARGUMENT"),
        ({"first": 5, "after": "garbage!"}, "INVALID_CURSOR"),
        ({"first": 5, "after": "WyJ4Il0"}, "INVALID_CURSOR"),  # ["x"]: wrong shape
        ({"first": 5, "before": "WzEsMl0"}, "INVALID_CURSOR"),  # [1,2]: not a time
    ],
)
def test_pagination_arguments_are_checked(client, token, variables, code):
    response = gql(client, "hangzhou", TX, variables, token=token)
    assert codes_of(response) == [code]
    assert response.json()["data"] == {"transactions": None}


def test_terminals_need_first_or_last_too(client, token):
    assert codes_of(gql(client, "hangzhou", "{ terminals { edges { cursor } } }", token=token)) == [
        "PAGINATION_REQUIRED"
    ]


def test_forward_pages_cover_everything_once_newest_first(client, token, hz_fleet):
    fleet, _, _ = hz_fleet
    seen, after, pages = [], None, 0
    while True:
        result = page(client, token, first=7, after=after)
        pages += 1
        seen += [edge["node"]["tappedAt"] for edge in result["edges"]]
        assert result["pageInfo"]["hasPreviousPage"] == (after is not None)
        if not result["pageInfo"]["hasNextPage"]:
            break
        after = result["pageInfo"]["endCursor"]
    assert pages == 5 and len(seen) == 30 and len(set(seen)) == 30
    assert seen == sorted(seen, reverse=True)
    assert seen[0] == max(fleet.times).astimezone(dt.UTC).isoformat()


def test_backward_pages_with_last_and_before(client, token, hz_fleet):
    newest_first = [e["node"]["id"] for e in page(client, token, first=30)["edges"]]
    tail = page(client, token, last=4)
    assert [e["node"]["id"] for e in tail["edges"]] == newest_first[-4:]
    assert tail["pageInfo"]["hasPreviousPage"] is True and tail["pageInfo"]["hasNextPage"] is False
    earlier = page(client, token, last=4, before=tail["pageInfo"]["startCursor"])
    assert [e["node"]["id"] for e in earlier["edges"]] == newest_first[-8:-4]
    assert earlier["pageInfo"]["hasNextPage"] is True
    head = page(client, token, last=10, before=page(client, token, first=3)["pageInfo"]["endCursor"])
    assert [e["node"]["id"] for e in head["edges"]] == newest_first[:2]
    assert head["pageInfo"]["hasPreviousPage"] is False


def test_an_empty_page(client, token):
    result = page(client, token, first=10)
    assert result == {
        "edges": [],
        "pageInfo": {"hasNextPage": False, "hasPreviousPage": False, "startCursor": None, "endCursor": None},
    }


def test_cursors_are_stable_under_inserts(client, token, tenant, hz_fleet):
    _, sim, cards = hz_fleet
    first = page(client, token, first=5)
    second_before = page(client, token, first=5, after=first["pageInfo"]["endCursor"])
    # newer taps arrive (and one older, late upload) between the two requests
    taps_in(
        tenant("hangzhou"),
        terminal_id=sim.terminal_id,
        cards=cards,
        per_card=2,
        register=False,
        sim=sim,
        start=BASE + dt.timedelta(hours=2),
    )
    second_after = page(client, token, first=5, after=first["pageInfo"]["endCursor"])
    assert second_after == second_before
    assert page(client, token, first=1)["edges"][0]["node"]["id"] != first["edges"][0]["node"]["id"]


def test_filters_by_card_number_and_time_range(client, token, hz_fleet):
    fleet, _, _ = hz_fleet
    card = fleet.cards[1]
    result = page(client, token, first=50, filter={"cardNumber": card})
    assert [e["node"]["cardNumber"] for e in result["edges"]] == [card] * 10
    assert [e["node"]["cardCounter"] for e in result["edges"]] == list(range(10, 0, -1))
    start, end = BASE + dt.timedelta(minutes=3), BASE + dt.timedelta(minutes=9)
    window = page(
        client, token, first=50, filter={"tappedFrom": start.isoformat(), "tappedTo": end.isoformat()}
    )
    times = [dt.datetime.fromisoformat(e["node"]["tappedAt"]) for e in window["edges"]]
    assert len(times) == 6 and all(start <= t < end for t in times)
    both = page(
        client,
        token,
        first=50,
        filter={"cardNumber": card, "tappedFrom": start.isoformat(), "tappedTo": end.isoformat()},
    )
    assert len(both["edges"]) == 2
    assert page(client, token, first=5, filter={"terminalId": "NO-SUCH"})["edges"] == []
    assert len(page(client, token, first=50, filter={"routing": "OWN"})["edges"]) == 30


@pytest.mark.parametrize("number", ["123", "3301000000000009001", "33010000000000090x6", " "])
def test_bad_card_numbers_are_named(client, token, number):
    response = gql(client, "hangzhou", TX, {"first": 5, "filter": {"cardNumber": number}}, token=token)
    assert codes_of(response) == ["INVALID_ARGUMENT"]
    assert "is not a card number" in response.json()["errors"][0]["message"]


def test_reversed_time_range_is_refused(client, token):
    response = gql(
        client,
        "hangzhou",
        TX,
        {"first": 5, "filter": {"tappedFrom": BASE.isoformat(), "tappedTo": BASE.isoformat()}},
        token=token,
    )
    assert codes_of(response) == ["INVALID_ARGUMENT"]


CARD = """query($card: String!, $first: Int, $after: String) {
  cardTransactions(cardNumber: $card, first: $first, after: $after) {
    edges { node { cardNumber cardCounter amountFen balanceAfterFen terminal { terminalId route } } }
    pageInfo { hasNextPage endCursor }
  }
}"""


def test_card_history_and_its_access_log(client, tenant, hz_fleet):
    fleet, _, _ = hz_fleet
    token = issue("hangzhou", [Scope.TRANSACTIONS_READ], name="Travel app")
    key_id = token.split("_")[1]
    with tenant_context(tenant("hangzhou")):
        before = AuditEntry.objects.filter(action="graphql.read").count()
    result = data_of(gql(client, "hangzhou", CARD, {"card": fleet.cards[0], "first": 4}, token=token))
    edges = result["cardTransactions"]["edges"]
    assert [e["node"]["cardCounter"] for e in edges] == [10, 9, 8, 7]
    assert edges[0]["node"] == {
        "cardNumber": fleet.cards[0],
        "cardCounter": 10,
        "amountFen": 200,
        "balanceAfterFen": 98_000,
        "terminal": {"terminalId": "HZ-GQL-1", "route": "7"},
    }
    with tenant_context(tenant("hangzhou")):
        entries = list(AuditEntry.objects.filter(action="graphql.read").order_by("seq"))
    assert len(entries) == before + 1
    entry = entries[-1]
    assert (entry.actor, entry.object_type, entry.object_id) == (f"apikey:{key_id}", "apikey", key_id)
    assert fleet.cards[0] in entry.payload and '"path":"cardTransactions"' in entry.payload
    # a list without a card number reads the cards tapped on its page: one entry, whatever the page size,
    # with what was asked, how many rows and which cards
    lister = issue("hangzhou", [Scope.TRANSACTIONS_READ])
    page = data_of(gql(client, "hangzhou", TX, {"first": 30}, token=lister))["transactions"]["edges"]
    with tenant_context(tenant("hangzhou")):
        entries = list(AuditEntry.objects.filter(action="graphql.read").order_by("seq"))
    assert len(entries) == before + 2
    (read,) = json.loads(entries[-1].payload)["reads"]
    assert read == {
        "type": "transactions",
        "ids": sorted(fleet.cards),
        "rows": 30,
        "asked": {"first": 30},
        "fields": ["cardCounter", "cardNumber", "id", "tappedAt"],
        "path": "transactions",
    }
    assert len(page) == 30 and entries[-1].actor == f"apikey:{lister.split('_')[1]}"
    # an empty page read nothing: not logged
    data_of(gql(client, "hangzhou", TX, {"first": 3, "filter": {"terminalId": "NOWHERE"}}, token=lister))
    with tenant_context(tenant("hangzhou")):
        assert AuditEntry.objects.filter(action="graphql.read").count() == before + 2
