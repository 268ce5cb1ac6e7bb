"""Protection: depth, cost, alias and batch limits, introspection switch, rate limiting, extensions.cost."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from citycard.platform.services import rate_limit_hit

from .conftest import codes_of, data_of, gql, issue

pytestmark = pytest.mark.django_db
PAGE = "{ transactions(first: %d) { edges { node { id terminal { terminalId } } } } }"


@pytest.fixture
def token():
    return issue("hangzhou")


def test_every_response_reports_its_cost(client, token):
    body = gql(client, "hangzhou", PAGE % 10, token=token).json()
    # (1 for the field + 1 for each node's terminal) × 10 nodes
    assert body["extensions"]["cost"] == {"requestedQueryCost": 20, "maximumAvailable": 1000}
    variables = gql(
        client,
        "hangzhou",
        "query($n: Int) { transactions(first: $n) { edges { cursor } } }",
        {"n": 40},
        token=token,
    ).json()
    assert variables["extensions"]["cost"]["requestedQueryCost"] == 40
    for refused in (
        gql(client, "hangzhou", "{ nope }", token=token),
        gql(client, "hangzhou", "{ me { keyId ", token=token),
        gql(client, "hangzhou", "{ me { keyId } }", token="cck_x_y"),
    ):
        assert refused.json()["extensions"]["cost"]["maximumAvailable"] == 1000


def test_query_above_the_cost_limit_is_refused_before_running(client, token, settings):
    settings.GRAPHQL_MAX_COST = 150
    response = gql(client, "hangzhou", PAGE % 100, token=token)
    body = response.json()
    assert response.status_code == 400
    assert codes_of(response) == ["QUERY_TOO_COSTLY"]
    assert body["extensions"]["cost"] == {"requestedQueryCost": 200, "maximumAvailable": 150}
    assert "data" not in body
    assert data_of(gql(client, "hangzhou", PAGE % 75, token=token))


def test_fragments_count_towards_cost(client, token):
    query = """
      query { transactions(first: 30) { edges { node { ...T } } } }
      fragment T on Transaction { id terminal { terminalId } }
    """
    assert (
        gql(client, "hangzhou", query, token=token).json()["extensions"]["cost"]["requestedQueryCost"] == 60
    )


def test_depth_limit(client, token, settings):
    settings.GRAPHQL_MAX_DEPTH = 4
    deep = "{ transactions(first: 1) { edges { node { terminal { terminalId } } } } }"  # depth 5
    response = gql(client, "hangzhou", deep, token=token)
    assert response.status_code == 400
    assert codes_of(response) == ["QUERY_TOO_DEEP"]
    assert "5 levels deep; at most 4" in response.json()["errors"][0]["message"]
    # the same depth hidden in a fragment
    hidden = "{ transactions(first: 1) { edges { ...E } } } fragment E on TransactionEdge { node { terminal { id } } }"
    assert codes_of(gql(client, "hangzhou", hidden, token=token)) == ["QUERY_TOO_DEEP"]
    settings.GRAPHQL_MAX_DEPTH = 5
    assert data_of(gql(client, "hangzhou", deep, token=token))


def test_alias_limit(client, token, settings):
    settings.GRAPHQL_MAX_ALIASES = 3
    aliased = "{ " + " ".join(f"k{i}: me {{ keyId }}" for i in range(4)) + " }"
    response = gql(client, "hangzhou", aliased, token=token)
    assert codes_of(response) == ["TOO_MANY_ALIASES"]
    ok = "{ " + " ".join(f"k{i}: me {{ keyId }}" for i in range(3)) + " }"
    assert set(data_of(gql(client, "hangzhou", ok, token=token))) == {"k0", "k1", "k2"}


def test_batches_up_to_the_limit(client, token, settings):
    settings.GRAPHQL_MAX_BATCH = 2
    ops = [{"query": "{ me { keyId } }"}, {"query": "{ transactions(first: 2) { edges { cursor } } }"}]
    response = gql(client, "hangzhou", "", body=ops, token=token)
    assert response.status_code == 200
    answers = response.json()
    assert [sorted(a["data"]) for a in answers] == [["me"], ["transactions"]]
    assert all("cost" in a["extensions"] for a in answers)
    response = gql(client, "hangzhou", "", body=ops + ops[:1], token=token)
    assert (response.status_code, codes_of(response)) == (400, ["TOO_MANY_OPERATIONS"])


def test_several_operations_in_one_document_need_an_operation_name(client, token):
    doc = "query A { me { keyId } } query B { me { name } }"
    assert codes_of(gql(client, "hangzhou", doc, token=token)) == ["BAD_REQUEST"]
    picked = gql(client, "hangzhou", "", body={"query": doc, "operationName": "B"}, token=token)
    assert set(data_of(picked)["me"]) == {"name"}


def test_introspection_and_graphiql_follow_the_settings(client, token, settings):
    query = "{ __schema { queryType { name } } }"
    settings.GRAPHQL_INTROSPECTION = False
    assert codes_of(gql(client, "hangzhou", query, token=token)) == ["INTROSPECTION_DISABLED"]
    assert data_of(gql(client, "hangzhou", "{ __typename }", token=token)) == {"__typename": "TenantQuery"}
    settings.GRAPHQL_INTROSPECTION = True
    assert (
        data_of(gql(client, "hangzhou", query, token=token))["__schema"]["queryType"]["name"] == "TenantQuery"
    )
    settings.GRAPHQL_GRAPHIQL = False
    page = client.get("/graphql/", HTTP_HOST="hangzhou.localhost", HTTP_ACCEPT="text/html")
    assert page.status_code == 405
    settings.GRAPHQL_GRAPHIQL = True
    page = client.get("/graphql/", HTTP_HOST="hangzhou.localhost", HTTP_ACCEPT="text/html")
    assert page.status_code == 200 and b"graphiql" in page.content.lower()


def test_malformed_requests(client, token):
    post = lambda body, ct="application/json": client.post(  # noqa: E731
        "/graphql/",
        body,
        content_type=ct,
        HTTP_HOST="hangzhou.localhost",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert codes_of(post("{not json")) == ["BAD_REQUEST"]
    assert codes_of(post(json.dumps("a string"))) == ["BAD_REQUEST"]
    assert codes_of(post(json.dumps({"query": ""}))) == ["BAD_REQUEST"]
    assert codes_of(post(json.dumps({"query": "{ me { keyId } }", "variables": [1]}))) == ["BAD_REQUEST"]
    assert post("{ me { keyId } }", "text/plain").status_code == 415
    assert data_of(post("{ me { keyId } }", "application/graphql"))
    assert codes_of(post(json.dumps({"query": "{ me { keyId "}))) == ["GRAPHQL_PARSE_FAILED"]
    assert codes_of(post(json.dumps({"query": "{ me { secret } }"}))) == ["GRAPHQL_VALIDATION_FAILED"]


def test_rate_limit_per_key_in_fixed_windows(client, settings):
    settings.GRAPHQL_RATE_LIMIT = 3
    settings.GRAPHQL_RATE_WINDOW_S = 3600
    first, second = issue("hangzhou"), issue("hangzhou")
    for remaining in (2, 1, 0):
        body = gql(client, "hangzhou", "{ me { keyId } }", token=first).json()
        assert body["extensions"]["rateLimit"]["remaining"] == remaining
    refused = gql(client, "hangzhou", "{ me { keyId } }", token=first)
    assert refused.status_code == 429
    assert codes_of(refused) == ["RATE_LIMITED"]
    assert int(refused["Retry-After"]) >= 1
    # another key has its own counter; a batch counts each of its operations
    assert data_of(gql(client, "hangzhou", "{ me { keyId } }", token=second))
    batch = [{"query": "{ me { keyId } }"}] * 3
    assert gql(client, "hangzhou", "", body=batch, token=second).status_code == 429


def test_rate_windows_are_fixed_and_counted_in_the_database():
    at = dt.datetime(2026, 3, 2, 10, 0, 59, tzinfo=dt.UTC)
    assert [rate_limit_hit(bucket="t", limit=2, window_s=60, now=at).allowed for _ in range(3)] == [
        True,
        True,
        False,
    ]
    decision = rate_limit_hit(bucket="t", limit=2, window_s=60, now=at)
    assert decision.reset_at == dt.datetime(2026, 3, 2, 10, 1, tzinfo=dt.UTC)
    nxt = rate_limit_hit(bucket="t", limit=2, window_s=60, now=at + dt.timedelta(seconds=1))
    assert (nxt.allowed, nxt.count, nxt.remaining) == (True, 1, 1)
    assert (
        rate_limit_hit(bucket="t", limit=2, window_s=60, weight=2, now=at + dt.timedelta(seconds=2)).count
        == 3
    )


def test_old_rate_windows_are_purged():
    from citycard.platform.models import RateWindow
    from citycard.platform.services import rate_windows_purge

    old = dt.datetime(2026, 3, 1, 10, 0, tzinfo=dt.UTC)
    rate_limit_hit(bucket="old", limit=5, window_s=60, now=old)
    rate_limit_hit(bucket="new", limit=5, window_s=60, now=old + dt.timedelta(days=2))
    assert rate_windows_purge(before=old + dt.timedelta(days=1)) == 1
    assert list(RateWindow.objects.filter(bucket__in=["old", "new"]).values_list("bucket", flat=True)) == [
        "new"
    ]


def test_the_purge_keeps_every_window_that_may_still_run(settings):
    """A counter is dropped only once the longest configured window that started with it has ended: an ID
    check window of a week keeps its counters a week, and so does a failed-authentication window."""
    from citycard.platform.tasks import rate_windows_kept

    settings.GRAPHQL_RATE_WINDOW_S, settings.ID_VERIFY_WINDOW_S = 60, 86_400
    assert rate_windows_kept() == dt.timedelta(days=1)
    settings.ID_VERIFY_WINDOW_S = 7 * 86_400
    assert rate_windows_kept() == dt.timedelta(days=7)
    settings.GRAPHQL_AUTH_FAILURES_WINDOW_S = 9 * 86_400  # failed authentications per address
    assert rate_windows_kept() == dt.timedelta(days=9)
