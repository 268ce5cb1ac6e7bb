"""The limits probe: hostile requests the audit of issue 15 found or could have found, each refused with its
code before anything runs (cost with defaults, floats and lists; body and document size; tokens; fields and
repeats bounding validation; aliases; depth; batches) — and the cost of what does run is what runs."""

from __future__ import annotations

import json

import pytest

from .conftest import codes_of, data_of, gql, issue

pytestmark = pytest.mark.django_db

PAGE = "query($n: Int) { transactions(first: $n) { edges { node { id terminal { terminalId } } } } }"


@pytest.fixture
def token():
    return issue("hangzhou")


def cost_of(response) -> int:
    return response.json()["extensions"]["cost"]["requestedQueryCost"]


def post_raw(client, body: bytes | str, token: str, content_type: str = "application/json"):
    return client.post(
        "/graphql/",
        body,
        content_type=content_type,
        HTTP_HOST="hangzhou.localhost",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


# --- cost: variables as the resolver gets them ----------------------------------------------------------------


def test_a_variables_default_is_costed_as_the_resolver_gets_it(client, token, settings):
    settings.GRAPHQL_MAX_COST = 150
    defaulted = PAGE.replace("$n: Int", "$n: Int = 100")
    response = gql(client, "hangzhou", defaulted, token=token)
    assert (response.status_code, codes_of(response)) == (400, ["QUERY_TOO_COSTLY"])
    assert cost_of(response) == 200 and "data" not in response.json()
    assert cost_of(gql(client, "hangzhou", defaulted, {"n": 10}, token=token)) == 20


def test_an_integral_float_is_costed_as_the_int_it_becomes(client, token, settings, hz_fleet):
    settings.GRAPHQL_MAX_COST = 150
    refused = gql(client, "hangzhou", PAGE, {"n": 100.0}, token=token)
    assert (refused.status_code, codes_of(refused), cost_of(refused)) == (400, ["QUERY_TOO_COSTLY"], 200)
    ran = gql(client, "hangzhou", PAGE, {"n": 7.0}, token=token)
    assert cost_of(ran) == 14 and len(data_of(ran)["transactions"]["edges"]) == 7


def test_a_variable_graphql_core_would_refuse_is_refused_before_anything_runs(client, token):
    for variables, variable in (
        ({"n": 2.5}, "n"),
        ({"n": "100"}, "n"),
        ({"n": 2**31}, "n"),
    ):
        response = gql(client, "hangzhou", PAGE, variables, token=token)
        body = response.json()
        assert (response.status_code, codes_of(response)) == (400, ["BAD_REQUEST"]), variables
        assert body["errors"][0]["extensions"]["variable"] == variable
        assert body["errors"][0]["message"].startswith(f"Variable '${variable}' got invalid value")
        assert "data" not in body
    nested = "query($f: TransactionFilterInput) { transactions(first: 1, filter: $f) { edges { cursor } } }"
    response = gql(client, "hangzhou", nested, {"f": {"routing": "NOWHERE"}}, token=token)
    assert codes_of(response) == ["BAD_REQUEST"]
    assert response.json()["errors"][0]["extensions"]["variable"] == "f"
    response = gql(client, "hangzhou", nested, {"f": {"cardNo": "1"}}, token=token)
    assert codes_of(response) == ["BAD_REQUEST"] and "cardNo" in response.json()["errors"][0]["message"]


def test_lists_and_input_objects_are_coerced_before_costing(client, token, hz_fleet):
    fleet, _, _ = hz_fleet
    query = """query($f: TransactionFilterInput = {terminalId: "HZ-GQL-1"}, $n: Int = 4) {
      transactions(first: $n, filter: $f) { edges { node { terminalId } } } }"""
    response = gql(client, "hangzhou", query, token=token)
    assert cost_of(response) == 4
    assert {e["node"]["terminalId"] for e in data_of(response)["transactions"]["edges"]} == {
        fleet.terminal_id
    }
    # a single value where a list is expected is a one-item list (platform: states)
    from .test_platform import login

    login(client, "clearing_staff")
    listed = """query($s: [ClearingCycleState!], $n: Int) {
      clearingCycles(first: $n, filter: {states: $s}) { edges { cursor } } }"""
    response = gql(client, "", listed, {"s": "SETTLED", "n": 3.0})
    assert cost_of(response) == 3 and data_of(response) == {"clearingCycles": {"edges": []}}


def test_a_field_selected_twice_runs_once_and_costs_once(client, token):
    twice = "{ transactions(first: 100) { edges { cursor } } transactions(first: 100) { edges { cursor } } }"
    assert cost_of(gql(client, "hangzhou", twice, token=token)) == 100
    # fragments spreading each other twice over: one merged selection when run, and costed so (not 2^20)
    chain = "".join(
        f"fragment F{i} on TransactionConnection {{ ...F{i + 1} ...F{i + 1} }} " for i in range(20)
    )
    last = "fragment F20 on TransactionConnection { edges { cursor } }"
    laughs = "{ transactions(first: 100) { ...F0 } } " + chain + last
    response = gql(client, "hangzhou", laughs, token=token)
    assert cost_of(response) == 100 and data_of(response)


# --- size, tokens, fields, repeats: bounded before validation --------------------------------------------------


def test_a_body_or_document_above_its_size_is_refused_unread(client, token, settings):
    settings.GRAPHQL_MAX_DOCUMENT_BYTES = 200
    big = "{ me { keyId } }" + " " * 200
    response = gql(client, "hangzhou", big, token=token)
    assert (response.status_code, codes_of(response)) == (400, ["DOCUMENT_TOO_LARGE"])
    assert response.json()["errors"][0]["extensions"]["maxBytes"] == 200
    chinese = '{ servicePoints(first: 1, filter: {text: "' + "路" * 60 + '"}) { edges { cursor } } }'
    assert codes_of(gql(client, "hangzhou", chinese, token=token)) == [
        "DOCUMENT_TOO_LARGE"
    ]  # bytes, not chars
    settings.GRAPHQL_MAX_BODY_BYTES = 1000
    padded = json.dumps({"query": "{ me { keyId } }", "variables": {"x": "y" * 1000}})
    response = post_raw(client, padded, token)
    assert (response.status_code, codes_of(response)) == (413, ["DOCUMENT_TOO_LARGE"])
    assert data_of(post_raw(client, json.dumps({"query": "{ me { keyId } }"}), token))
    settings.GRAPHQL_MAX_BODY_BYTES = 65_536
    deep = '{"query": "{ me { keyId } }", "variables": {"x": ' + "[" * 60_000 + "]" * 60_000 + "}}"
    response = post_raw(client, deep, token)
    assert (response.status_code, codes_of(response)) == (413, ["DOCUMENT_TOO_LARGE"])
    # within the size but nested past the JSON parser's recursion limit: not valid JSON, not a crash
    deep = '{"query": "{ me { keyId } }", "variables": {"x": ' + "[" * 30_000 + "]" * 30_000 + "}}"
    assert codes_of(post_raw(client, deep, token)) == ["BAD_REQUEST"]


def test_the_parser_stops_at_the_token_limit(client, token, settings):
    settings.GRAPHQL_MAX_TOKENS = 40
    many = "{ me { " + "keyId " * 40 + "} }"
    response = gql(client, "hangzhou", many, token=token)
    assert (response.status_code, codes_of(response)) == (400, ["TOO_MANY_TOKENS"])
    assert response.json()["errors"][0]["extensions"]["maxTokens"] == 40
    comments = "{ me { keyId } }" + "\n#" * 41
    assert codes_of(gql(client, "hangzhou", comments, token=token)) == ["TOO_MANY_TOKENS"]
    assert data_of(gql(client, "hangzhou", "{ me { keyId } }", token=token))


def test_a_field_repeated_500_times_is_refused_before_validation(client, token, settings, monkeypatch):
    """500 × ``me { keyId }`` took 1.1 s of validation (OverlappingFieldsCanBeMerged compares every pair):
    refused by the bounds before validation starts, whichever bound the document meets first."""
    import citycard.graphql.core.views as views

    validated = []
    monkeypatch.setattr(views, "validate", lambda *a, **k: validated.append(1) or [])
    repeated = "{" + " me { keyId }" * 500 + "}"
    assert codes_of(gql(client, "hangzhou", repeated, token=token)) == ["TOO_MANY_TOKENS"]  # 2,002 tokens
    assert codes_of(gql(client, "hangzhou", "{ me {" + " keyId" * 500 + " } }", token=token)) == [
        "TOO_MANY_FIELDS"  # 501 fields
    ]
    # every other bound lifted: the repeats are what is left
    settings.GRAPHQL_MAX_TOKENS, settings.GRAPHQL_MAX_FIELDS = 10_000, 10_000
    settings.GRAPHQL_MAX_DOCUMENT_BYTES = settings.GRAPHQL_MAX_BODY_BYTES = 1_000_000
    response = gql(client, "hangzhou", repeated, token=token)
    assert (response.status_code, codes_of(response)) == (400, ["TOO_MANY_REPEATED_FIELDS"])
    assert "'me' is selected 500 times" in response.json()["errors"][0]["message"]
    for hidden in (
        "{ me {" + " keyId" * 500 + " } }",
        "{" + " ... on TenantQuery { me { keyId } }" * 500 + "}",
        "{"
        + "".join(f" ...F{i}" for i in range(500))
        + " } "
        + "".join(f"fragment F{i} on TenantQuery {{ me {{ keyId }} }} " for i in range(500)),
        # merged across the fields they sit under
        "{" + " me { keyId }" * 10 + " me { tenant { code } }" * 10 + "}",
    ):
        assert codes_of(gql(client, "hangzhou", hidden, token=token)) == ["TOO_MANY_REPEATED_FIELDS"], hidden[
            :60
        ]
    assert validated == []
    settings.GRAPHQL_MAX_FIELD_REPEATS = 3
    assert codes_of(gql(client, "hangzhou", "{ me { keyId keyId keyId keyId } }", token=token)) == [
        "TOO_MANY_REPEATED_FIELDS"
    ]
    assert validated == []


def test_fields_are_counted_where_fragments_are_spread(client, token, settings):
    settings.GRAPHQL_MAX_FIELDS = 20
    fragment = "fragment K on ApiKeyInfo { keyId name scopes tokenLast4 expiresAt }"
    six = "{ me { ...K } } " + fragment  # 1 + 5
    assert data_of(gql(client, "hangzhou", six, token=token))
    spread = "{ a: me { ...K } b: me { ...K } c: me { ...K } d: me { ...K } } " + fragment  # 4 × 6
    response = gql(client, "hangzhou", spread, token=token)
    assert (response.status_code, codes_of(response)) == (400, ["TOO_MANY_FIELDS"])
    # a fragment no operation spreads is validated all the same, so counted
    unused = "{ me { keyId } } fragment U on TenantQuery {" + " me { keyId name }" * 7 + " }"
    assert codes_of(gql(client, "hangzhou", unused, token=token)) == ["TOO_MANY_FIELDS"]
    # and cycles end the walk (then validation reports them)
    cycle = (
        "{ me { ...A } } fragment A on ApiKeyInfo { tenant { code } ...B } fragment B on ApiKeyInfo { ...A }"
    )
    assert codes_of(gql(client, "hangzhou", cycle, token=token)) == ["GRAPHQL_VALIDATION_FAILED"]


def test_depth_and_aliases_are_bounded_before_validation(client, token, settings, monkeypatch):
    import citycard.graphql.core.views as views

    validated = []
    monkeypatch.setattr(views, "validate", lambda *a, **k: validated.append(1) or [])
    settings.GRAPHQL_MAX_DEPTH, settings.GRAPHQL_MAX_ALIASES = 2, 2
    assert codes_of(gql(client, "hangzhou", "{ me { tenant { code } } }", token=token)) == ["QUERY_TOO_DEEP"]
    aliased = "{ a: me { keyId } b: me { keyId } c: me { keyId } }"
    assert codes_of(gql(client, "hangzhou", aliased, token=token)) == ["TOO_MANY_ALIASES"]
    assert validated == []


def test_a_comment_or_spacing_does_not_buy_a_fresh_validation(client, token, monkeypatch):
    import citycard.graphql.core.views as views
    from citycard.graphql.views import TenantGraphQLView

    TenantGraphQLView._document_cache.clear()
    TenantGraphQLView._valid_documents.clear()
    calls = []
    real = views.validate
    monkeypatch.setattr(views, "validate", lambda *a, **k: calls.append(1) or real(*a, **k))
    query = "{ me { keyId name } }"
    for variant in (
        query,
        "# 1\n" + query,
        "{me{keyId name}}",
        "{\n  me {\n    keyId\n    name\n  }\n}\n# x",
    ):
        assert data_of(gql(client, "hangzhou", variant, token=token)) == data_of(
            gql(client, "hangzhou", query, token=token)
        )
    assert calls == [1]


# --- batches ----------------------------------------------------------------------------------------------------


def test_a_batch_is_bounded_in_operations_and_in_summed_cost(client, token, settings, tenant):
    from django_tenants.utils import tenant_context

    from citycard.platform.scopes import Scope
    from citycard.tenants.cards.models import Card

    settings.GRAPHQL_MAX_BATCH, settings.GRAPHQL_MAX_BATCH_COST = 3, 100
    page, me = {"query": PAGE, "variables": {"n": 40}}, {"query": "{ me { keyId } }"}
    ok = gql(client, "hangzhou", "", body=[page, me], token=token)
    assert ok.status_code == 200 and [cost_of_body(a) for a in ok.json()] == [80, 1]
    apply = {"query": 'mutation { cardApply(schemeCode: "03", requestKey: "batch-1") { card { number } } }'}
    writer = issue("hangzhou", [Scope.CARDS_APPLY, Scope.TRANSACTIONS_READ, Scope.TERMINALS_READ])
    with tenant_context(tenant("hangzhou")):
        cards = Card.objects.count()
    response = gql(client, "hangzhou", "", body=[apply, page, page], token=writer)
    body = response.json()
    assert (response.status_code, codes_of(response)) == (400, ["QUERY_TOO_COSTLY"])
    assert body["extensions"]["cost"] == {"requestedQueryCost": 11 + 80 + 80, "maximumAvailable": 100}
    assert "cost 171 together; at most 100" in body["errors"][0]["message"]
    with tenant_context(tenant("hangzhou")):
        assert Card.objects.count() == cards  # nothing of the batch ran
    # an operation refused on its own runs nothing, so costs the batch nothing
    settings.GRAPHQL_MAX_COST = 50
    mixed = gql(client, "hangzhou", "", body=[page, page, me], token=token).json()
    assert [a.get("errors", [{}])[0].get("extensions", {}).get("code") for a in mixed] == [
        "QUERY_TOO_COSTLY",
        "QUERY_TOO_COSTLY",
        None,
    ]
    too_many = gql(client, "hangzhou", "", body=[me] * 4, token=token)
    assert (too_many.status_code, codes_of(too_many)) == (400, ["TOO_MANY_OPERATIONS"])


def cost_of_body(body: dict) -> int:
    return body["extensions"]["cost"]["requestedQueryCost"]


# --- strings no field can take ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "variables", "argument"),
    [
        ('{ terminal(terminalId: "HZ\\u0000") { terminalId } }', None, "terminalId"),
        ('{ card(number: "33010\\u0007") { number } }', None, "number"),
        (
            '{ transactions(first: 1, filter: {cardNumber: "1\\u0000"}) { edges { cursor } } }',
            None,
            "filter.cardNumber",
        ),
        ("query($t: String!) { terminal(terminalId: $t) { terminalId } }", {"t": "HZ\x00GQL"}, "terminalId"),
        ("query($t: String!) { terminal(terminalId: $t) { terminalId } }", {"t": "HZ\ud800"}, "terminalId"),
        (
            "query($f: TransactionFilterInput) { transactions(first: 1, filter: $f) { edges { cursor } } }",
            {"f": {"terminalId": "x\x1b[2J"}},
            "filter",
        ),
        (
            "query($f: ServicePointFilterInput) { servicePoints(first: 1, filter: $f) { edges { cursor } } }",
            {"f": {"text": "\x00"}},
            "filter",
        ),
        ('query($t: String = "\\u0000") { terminal(terminalId: $t) { terminalId } }', None, "$t"),
    ],
)
def test_nul_and_other_control_characters_are_refused_naming_the_argument(
    client, token, hz_fleet, query, variables, argument
):
    response = gql(client, "hangzhou", query, variables, token=token)
    body = response.json()
    assert (response.status_code, codes_of(response)) == (400, ["INVALID_ARGUMENT"]), body
    assert body["errors"][0]["extensions"]["argument"] == argument
    assert argument.split(".")[0].lstrip("$") in body["errors"][0]["message"]
    assert "data" not in body


def test_tab_cr_and_lf_are_text_like_any_other(client, token, hz_people):
    query = "query($t: String) { servicePoints(first: 5, filter: {text: $t}) { edges { node { code } } } }"
    assert data_of(gql(client, "hangzhou", query, {"t": "解放路\t\r\n"}, token=token))
    mutation = """mutation($c: String!, $i: String!) { cardReportLost(cardNumber: $c, idNumber: $i) {
      errors { code } } }"""
    response = gql(client, "hangzhou", mutation, {"c": hz_people.plain_card, "i": "\x00" * 18}, token=token)
    assert codes_of(response) == ["INVALID_ARGUMENT"]
    assert response.json()["errors"][0]["extensions"] == {
        "code": "INVALID_ARGUMENT",
        "argument": "idNumber",
        "variable": "i",
    }


# --- failed authentications ---------------------------------------------------------------------------------

UNKNOWN = "cck_deadbeef_" + "x" * 43


def test_failed_authentications_are_limited_per_client_address(client, settings, monkeypatch):
    import datetime as dt

    from django.utils import timezone

    from citycard.platform import services

    settings.GRAPHQL_AUTH_FAILURES, settings.GRAPHQL_AUTH_FAILURES_WINDOW_S = 3, 600
    good, revoked = issue("hangzhou"), issue("hangzhou")
    services.api_key_revoke(tenant_code="hangzhou", key_id=services.api_key_parse(revoked), reason="leaked")
    forged = good[:-4] + ("AAAA" if good[-4:] != "AAAA" else "BBBB")
    for token, code in ((UNKNOWN, "INVALID_TOKEN"), (forged, "INVALID_TOKEN"), (revoked, "TOKEN_REVOKED")):
        response = gql(client, "hangzhou", "{ me { keyId } }", token=token)
        assert (response.status_code, codes_of(response)) == (401, [code])
    # the address has used them up: every key it sends is refused unchecked, the right one too
    for token in (good, forged, UNKNOWN, "not-a-key"):
        response = gql(client, "hangzhou", "{ me { keyId } }", token=token)
        assert (response.status_code, codes_of(response)) == (429, ["RATE_LIMITED"]), token
        assert 1 <= int(response["Retry-After"]) <= 600
    # another address is not held back, nor is a request sending no key (it guesses nothing)
    assert data_of(gql(client, "hangzhou", "{ me { keyId } }", token=good, REMOTE_ADDR="10.9.9.9"))
    assert codes_of(gql(client, "hangzhou", "{ me { keyId } }")) == ["UNAUTHENTICATED"]
    # the next window opens the address again
    later = timezone.now() + dt.timedelta(seconds=600)
    monkeypatch.setattr(timezone, "now", lambda: later)
    assert data_of(gql(client, "hangzhou", "{ me { keyId } }", token=good))


def test_the_address_is_x_forwarded_for_only_behind_trusted_proxies(client, settings):
    settings.GRAPHQL_AUTH_FAILURES = 1
    good = issue("hangzhou")

    def ask(token: str, forwarded: str):
        return gql(
            client,
            "hangzhou",
            "{ me { keyId } }",
            token=token,
            REMOTE_ADDR="10.0.0.1",
            HTTP_X_FORWARDED_FOR=forwarded,
        )

    # no trusted proxy: X-Forwarded-For is the client's say-so; the address is REMOTE_ADDR
    assert codes_of(ask(UNKNOWN, "198.51.100.1")) == ["INVALID_TOKEN"]
    assert codes_of(ask(good, "198.51.100.2")) == ["RATE_LIMITED"]
    # one trusted proxy: the address it appended (the rightmost), whatever the client put before it
    settings.GRAPHQL_TRUSTED_PROXIES = 1
    assert data_of(ask(good, "198.51.100.1"))
    assert codes_of(ask(UNKNOWN, "spoofed, 203.0.113.7")) == ["INVALID_TOKEN"]
    assert codes_of(ask(good, "another-spoof, 203.0.113.7")) == ["RATE_LIMITED"]
    assert data_of(ask(good, "203.0.113.8"))


def test_platform_keys_are_limited_and_sessions_are_not(client, settings):
    from .test_platform import login

    settings.GRAPHQL_AUTH_FAILURES = 2
    platform_key = issue("public", ["tenants:read"], name="dashboard")
    partner_key = issue("hangzhou")
    assert codes_of(gql(client, "", "{ me { username } }", token=partner_key)) == ["WRONG_TENANT"]
    assert codes_of(gql(client, "", "{ me { username } }", token=UNKNOWN)) == ["INVALID_TOKEN"]
    assert codes_of(gql(client, "", "{ me { username } }", token=platform_key)) == ["RATE_LIMITED"]
    login(client, "clearing_staff")
    assert data_of(gql(client, "", "{ me { username } }"))["me"]["username"] == "clearing_staff-gql"
