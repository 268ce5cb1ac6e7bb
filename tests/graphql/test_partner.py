"""The partner fields of the tenant endpoint: a card by number, cardholder verification, rider categories
and concessions, subsidy payments, service points, loss reports and applications. Fixed dates throughout."""

from __future__ import annotations

import json

import pytest
from django_tenants.utils import tenant_context

from citycard.platform.audit.models import AuditEntry
from citycard.platform.scopes import Scope
from citycard.tenants.terminals.simulate import SimCard
from citycard.terminal_kit.cardno import card_number_build

from .conftest import ON, codes_of, data_of, gql, issue, taps_in

UNKNOWN = card_number_build(division="330100", scheme="01", serial=99_999)  # valid, but no such card

pytestmark = pytest.mark.django_db

CARD = """query($n: String!) { card(number: $n) {
  number state named isMain applications validFrom expiresOn frozenAt closedAt
  scheme { code nameZh isMain virtual realName validityYears applications }
  balance { accountOpen accountFen accountOverdraftFen purseShadowFen purseCounter }
} }"""
VERIFY = "query($c: String!, $i: String!) { cardholderVerify(cardNumber: $c, idNumber: $i) { cardNumber matches } }"
CATEGORIES = """query($c: String!, $on: Date) { cardholderCategories(cardNumber: $c, onDate: $on) {
  cardNumber onDate fareRulesVersion fareRulesOwner
  categories { code name validFrom validTo validOnDate }
  concessions { ruleId name service routeSet timeframe categories kind value description priority
                quota { id period rides } validFrom validTo }
} }"""
SUBSIDIES = """query($c: String!, $first: Int, $after: String) {
  subsidyPayments(cardNumber: $c, first: $first, after: $after) {
    edges { cursor node { id programme { code name } period eligibleOn amountFen items { item amountFen } } }
    pageInfo { hasNextPage hasPreviousPage endCursor }
} }"""
POINTS = """query($first: Int, $after: String, $filter: ServicePointFilterInput) {
  servicePoints(first: $first, after: $after, filter: $filter) {
    edges { node { code name address hours services department { code kind name } } }
    pageInfo { hasNextPage endCursor }
} }"""
REPORT = """mutation($c: String!, $i: String!, $r: LossReason) {
  cardReportLost(cardNumber: $c, idNumber: $i, reason: $r) {
    card { number state frozenAt } reportedAt alreadyReported errors { field message code }
} }"""
APPLY = """mutation($s: String!, $i: String, $k: String!) {
  cardApply(schemeCode: $s, idNumber: $i, requestKey: $k) {
    card { number state named scheme { code } } errors { field message code }
} }"""


def reads(tenant_obj) -> list[dict]:
    with tenant_context(tenant_obj):
        entries = AuditEntry.objects.filter(action="graphql.read").order_by("seq")
        return [json.loads(e.payload) for e in entries]


# --- card by number ----------------------------------------------------------------------------------


def test_card_by_number(client, tenant, hz_people):
    token = issue("hangzhou", [Scope.CARDS_READ], name="Bank app")
    card = data_of(gql(client, "hangzhou", CARD, {"n": hz_people.elderly_card}, token=token))["card"]
    assert card == {
        "number": hz_people.elderly_card,
        "state": "ACTIVE",
        "named": True,
        "isMain": True,
        "applications": ["SOCIAL_SECURITY", "MEDICAL", "TRANSIT", "ONLINE_ACCOUNT", "LIBRARY", "PARK_PASS"],
        "validFrom": "2026-01-05",
        "expiresOn": "2036-01-05",
        "frozenAt": None,
        "closedAt": None,
        "scheme": {
            "code": "01",
            "nameZh": "社会保障·市民卡",
            "isMain": True,
            "virtual": False,
            "realName": True,
            "validityYears": 10,
            "applications": [
                "SOCIAL_SECURITY",
                "MEDICAL",
                "TRANSIT",
                "ONLINE_ACCOUNT",
                "LIBRARY",
                "PARK_PASS",
            ],
        },
        # topped up 5000, loaded 2000 onto the e-purse, subsidies 12500 + 3000
        "balance": {
            "accountOpen": True,
            "accountFen": 18_500,
            "accountOverdraftFen": 0,
            "purseShadowFen": 2000,
            "purseCounter": 0,
        },
    }
    anonymous = data_of(gql(client, "hangzhou", CARD, {"n": hz_people.anonymous_card}, token=token))["card"]
    assert (anonymous["named"], anonymous["scheme"]["code"], anonymous["balance"]) == (
        False,
        "03",
        {
            "accountOpen": False,
            "accountFen": None,
            "accountOverdraftFen": None,
            "purseShadowFen": None,
            "purseCounter": None,
        },
    )
    # the read is logged against the key: the card and the fields read
    logged = reads(tenant("hangzhou"))
    assert logged[-2]["reads"] == [
        {
            "type": "card",
            "ids": [hz_people.elderly_card],
            "fields": sorted(
                [
                    "applications",
                    "balance",
                    "closedAt",
                    "expiresOn",
                    "frozenAt",
                    "isMain",
                    "named",
                    "number",
                    "scheme",
                    "state",
                    "validFrom",
                ]
            ),
            "path": "card",
        }
    ]


def test_card_unknown_bad_number_and_scopes(client, hz_people):
    token = issue("hangzhou", [Scope.CARDS_READ])
    assert data_of(gql(client, "hangzhou", CARD, {"n": UNKNOWN}, token=token)) == {"card": None}
    response = gql(client, "hangzhou", CARD, {"n": "3301000100000000016"}, token=token)  # Luhn digit wrong
    assert codes_of(response) == ["INVALID_ARGUMENT"]
    assert response.json()["errors"][0]["extensions"]["argument"] == "number"
    refused = gql(
        client,
        "hangzhou",
        CARD,
        {"n": hz_people.elderly_card},
        token=issue("hangzhou", [Scope.TERMINALS_READ]),
    )
    assert codes_of(refused) == ["PERMISSION_DENIED"]
    assert refused.json()["errors"][0]["extensions"]["required"] == ["cards:read"]
    # transactions under a card need transactions:read as well
    query = (
        "query($n: String!) { card(number: $n) { state transactions(first: 5) { edges { node { id } } } } }"
    )
    partial = gql(client, "hangzhou", query, {"n": hz_people.elderly_card}, token=token).json()
    assert partial["data"]["card"] == {"state": "ACTIVE", "transactions": None}
    assert [e["extensions"]["code"] for e in partial["errors"]] == ["PERMISSION_DENIED"]
    assert partial["errors"][0]["path"] == ["card", "transactions"]


def test_card_transactions_connection(client, tenant, hz_people):
    taps_in(tenant("hangzhou"), terminal_id="HZ-CARD-1", cards=[SimCard(hz_people.elderly_card)], per_card=7)
    token = issue("hangzhou", [Scope.CARDS_READ, Scope.TRANSACTIONS_READ])
    query = """query($n: String!, $first: Int, $after: String) { card(number: $n) {
      transactions(first: $first, after: $after) {
        edges { cursor node { cardNumber cardCounter terminal { terminalId } } }
        pageInfo { hasNextPage hasPreviousPage endCursor } } } }"""
    first = data_of(gql(client, "hangzhou", query, {"n": hz_people.elderly_card, "first": 4}, token=token))
    page = first["card"]["transactions"]
    assert [e["node"]["cardCounter"] for e in page["edges"]] == [7, 6, 5, 4]
    assert {e["node"]["cardNumber"] for e in page["edges"]} == {hz_people.elderly_card}
    assert page["edges"][0]["node"]["terminal"] == {"terminalId": "HZ-CARD-1"}
    assert page["pageInfo"]["hasNextPage"] is True
    rest = data_of(
        gql(
            client,
            "hangzhou",
            query,
            {"n": hz_people.elderly_card, "first": 4, "after": page["pageInfo"]["endCursor"]},
            token=token,
        )
    )["card"]["transactions"]
    assert [e["node"]["cardCounter"] for e in rest["edges"]] == [3, 2, 1]
    assert (rest["pageInfo"]["hasNextPage"], rest["pageInfo"]["hasPreviousPage"]) == (False, True)
    missing = gql(client, "hangzhou", query, {"n": hz_people.elderly_card}, token=token).json()
    assert [e["extensions"]["code"] for e in missing["errors"]] == ["PAGINATION_REQUIRED"]


# --- verification ------------------------------------------------------------------------------------


def test_cardholder_verify_yes_no_never_the_id(client, tenant, hz_people):
    token = issue("hangzhou", [Scope.CARDHOLDERS_VERIFY], name="Hospital app")
    cases = [
        (hz_people.elderly_card, hz_people.elderly_id, True),
        (hz_people.elderly_card, hz_people.elderly_id.lower(), True),  # a lower-case x is the same number
        (hz_people.elderly_card, hz_people.plain_id, False),  # another person
        (hz_people.plain_card, hz_people.plain_id, True),
        (hz_people.anonymous_card, hz_people.plain_id, False),  # anonymous card
        (UNKNOWN, hz_people.plain_id, False),  # no such card
    ]
    for card_no, id_number, expected in cases:
        response = gql(client, "hangzhou", VERIFY, {"c": card_no, "i": id_number}, token=token)
        assert data_of(response)["cardholderVerify"] == {"cardNumber": card_no, "matches": expected}
        assert id_number.upper() not in response.content.decode()
    bad = gql(
        client, "hangzhou", VERIFY, {"c": hz_people.elderly_card, "i": "33010219500501121X"}, token=token
    )
    assert codes_of(bad) == ["INVALID_ARGUMENT"]
    assert bad.json()["errors"][0]["extensions"]["argument"] == "idNumber"
    assert "校验码" in bad.json()["errors"][0]["message"]  # the check character, in the request's language
    logged = reads(tenant("hangzhou"))
    assert logged[-1]["reads"][0]["type"] == "cardholder_verify"
    assert logged[-1]["reads"][0]["fields"] == ["id_number"]
    assert all(hz_people.elderly_id not in json.dumps(entry) for entry in logged)
    refused = gql(
        client,
        "hangzhou",
        VERIFY,
        {"c": hz_people.elderly_card, "i": hz_people.elderly_id},
        token=issue("hangzhou", [Scope.CARDS_READ]),
    )
    assert codes_of(refused) == ["PERMISSION_DENIED"]


def test_cardholder_verify_failures_are_bounded_per_card(client, tenant, hz_people, settings):
    """Guessing a card's ID number: after ID_VERIFY_MAX_FAILURES wrong answers in the window, the card
    answers no verification, right or wrong, to any caller (RATE_LIMITED); other cards are unaffected; a
    malformed ID number is not counted; the loss report shares the count and answers TOO_MANY_ATTEMPTS."""
    settings.ID_VERIFY_MAX_FAILURES = 3
    hospital = issue("hangzhou", [Scope.CARDHOLDERS_VERIFY], name="Hospital app")
    other_app = issue("hangzhou", [Scope.CARDHOLDERS_VERIFY, Scope.CARDS_REPORT_LOSS], name="Bank app")

    def verify(card_no, id_number, token=hospital):
        return gql(client, "hangzhou", VERIFY, {"c": card_no, "i": id_number}, token=token)

    target = hz_people.elderly_card
    assert codes_of(verify(target, "33010219500501121X")) == ["INVALID_ARGUMENT"]  # malformed: not counted
    for _ in range(2):
        assert data_of(verify(target, hz_people.plain_id))["cardholderVerify"]["matches"] is False
    report = {"c": target, "i": hz_people.plain_id}
    mismatch = data_of(gql(client, "hangzhou", REPORT, report, token=other_app))["cardReportLost"]
    assert [e["code"] for e in mismatch["errors"]] == [
        "ID_MISMATCH"
    ]  # the third failure, from another caller
    locked = verify(target, hz_people.elderly_id)  # the right number, too late
    assert codes_of(locked) == ["RATE_LIMITED"]
    assert hz_people.elderly_id not in locked.content.decode()
    right = {"c": target, "i": hz_people.elderly_id}
    refused = data_of(gql(client, "hangzhou", REPORT, right, token=other_app))["cardReportLost"]
    assert [(e["field"], e["code"]) for e in refused["errors"]] == [("idNumber", "TOO_MANY_ATTEMPTS")]
    assert refused["card"] is None
    assert data_of(verify(hz_people.plain_card, hz_people.plain_id))["cardholderVerify"]["matches"] is True
    logged = [entry["reads"][0] for entry in reads(tenant("hangzhou"))]
    attempts = [r for r in logged if (r["type"], r["ids"]) == ("cardholder_verify", [target])]
    assert len(attempts) == 4  # every attempt of the query is in the access log, the refused ones too


def test_cardholder_verify_attempts_reopen_with_the_next_window(tenant, hz_people, settings):
    import datetime as dt

    from django_tenants.utils import tenant_context

    from citycard.platform.errors import DomainError
    from citycard.tenants.cards.services import cardholder_verify_attempt

    settings.ID_VERIFY_MAX_FAILURES, settings.ID_VERIFY_WINDOW_S = 2, 3600
    start = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC)
    with tenant_context(tenant("hangzhou")):
        card, right, wrong = hz_people.plain_card, hz_people.plain_id, hz_people.elderly_id
        assert cardholder_verify_attempt(card_no=card, id_number=wrong, now=start) is False
        assert cardholder_verify_attempt(card_no=card, id_number=right, now=start) is True  # not counted
        assert cardholder_verify_attempt(card_no=card, id_number=wrong, now=start) is False
        with pytest.raises(DomainError) as refused:
            cardholder_verify_attempt(card_no=card, id_number=right, now=start + dt.timedelta(minutes=59))
        assert refused.value.code == "too_many_attempts"
        assert (
            cardholder_verify_attempt(card_no=card, id_number=right, now=start + dt.timedelta(hours=1))
            is True
        )


# --- categories and concessions ----------------------------------------------------------------------


def test_rider_categories_and_concessions(client, tenant, hz_people):
    token = issue("hangzhou", [Scope.CARDHOLDERS_CATEGORIES])
    answer = data_of(
        gql(client, "hangzhou", CATEGORIES, {"c": hz_people.elderly_card, "on": ON.isoformat()}, token=token)
    )["cardholderCategories"]
    assert answer["onDate"] == "2026-03-02"
    assert answer["categories"] == [
        {
            "code": "DISABLED",
            "name": "爱心",  # the label in the request's language (zh-hans by default)
            "validFrom": "2021-01-01",
            "validTo": "2021-12-31",
            "validOnDate": False,
        },
        {
            "code": "ELDERLY",
            "name": "敬老",
            "validFrom": "2020-01-01",
            "validTo": None,
            "validOnDate": True,
        },
    ]
    assert (answer["fareRulesVersion"], answer["fareRulesOwner"]) == (1, "hangzhou")
    rules = {c["ruleId"]: c for c in answer["concessions"]}
    # the rules naming elderly (the disabled category lapsed in 2021: hz-disabled-free does not apply)
    assert "hz-disabled-free" not in rules
    assert [c["ruleId"] for c in answer["concessions"]] == sorted(
        rules, key=lambda r: (-rules[r]["priority"], r)
    )
    free = rules["hz-elderly-free"]
    assert (free["kind"], free["timeframe"], free["quota"], free["categories"]) == (
        "FREE",
        "hz-off-peak",
        {"id": "hz-elderly-free", "period": "month", "rides": 30},
        ["ELDERLY"],
    )
    assert (rules["hz-elderly-peak"]["kind"], rules["hz-elderly-peak"]["value"]) == ("PERCENT", 5000)
    assert rules["hz-elderly-peak"]["description"] == "50% of base"
    # in 2021 the disabled category was valid too
    earlier = data_of(
        gql(client, "hangzhou", CATEGORIES, {"c": hz_people.elderly_card, "on": "2021-06-01"}, token=token)
    )["cardholderCategories"]
    assert "hz-disabled-free" in {c["ruleId"] for c in earlier["concessions"]}
    plain = data_of(
        gql(client, "hangzhou", CATEGORIES, {"c": hz_people.plain_card, "on": "2026-03-02"}, token=token)
    )
    assert plain["cardholderCategories"]["categories"] == []
    assert plain["cardholderCategories"]["concessions"] == []
    unknown = gql(client, "hangzhou", CATEGORIES, {"c": UNKNOWN}, token=token)
    assert data_of(unknown) == {"cardholderCategories": None}
    assert reads(tenant("hangzhou"))[-2]["reads"][0]["fields"] == ["categories"]
    refused = gql(
        client,
        "hangzhou",
        CATEGORIES,
        {"c": hz_people.elderly_card},
        token=issue("hangzhou", [Scope.CARDS_READ]),
    )
    assert codes_of(refused) == ["PERMISSION_DENIED"]


# --- subsidies ---------------------------------------------------------------------------------------


def test_subsidy_payments_with_items(client, tenant, hz_people):
    token = issue("hangzhou", [Scope.SUBSIDIES_READ])
    first = data_of(
        gql(client, "hangzhou", SUBSIDIES, {"c": hz_people.elderly_card, "first": 1}, token=token)
    )
    page = first["subsidyPayments"]
    assert [e["node"]["programme"]["code"] for e in page["edges"]] == ["heating"]  # the newest run first
    assert page["edges"][0]["node"]["items"] == [{"item": "取暖补贴", "amountFen": 3000}]
    assert (page["edges"][0]["node"]["period"], page["edges"][0]["node"]["eligibleOn"]) == (
        "2026-02",
        "2026-02-01",
    )
    assert page["pageInfo"]["hasNextPage"] is True
    rest = data_of(
        gql(
            client,
            "hangzhou",
            SUBSIDIES,
            {"c": hz_people.elderly_card, "first": 5, "after": page["pageInfo"]["endCursor"]},
            token=token,
        )
    )["subsidyPayments"]
    assert [e["node"]["programme"]["code"] for e in rest["edges"]] == ["elderly-care"]
    assert rest["edges"][0]["node"]["amountFen"] == 12_500
    assert rest["edges"][0]["node"]["items"] == [
        {"item": "高龄津贴", "amountFen": 10_000},
        {"item": "交通补贴", "amountFen": 2500},
    ]
    assert (rest["pageInfo"]["hasNextPage"], rest["pageInfo"]["hasPreviousPage"]) == (False, True)
    assert reads(tenant("hangzhou"))[-1]["reads"][0]["fields"] == ["subsidy_payments"]
    for card_no in (hz_people.plain_card, hz_people.anonymous_card, UNKNOWN):
        none = data_of(gql(client, "hangzhou", SUBSIDIES, {"c": card_no, "first": 5}, token=token))
        assert none["subsidyPayments"]["edges"] == []
    assert codes_of(gql(client, "hangzhou", SUBSIDIES, {"c": hz_people.elderly_card}, token=token)) == [
        "PAGINATION_REQUIRED"
    ]
    refused = gql(
        client,
        "hangzhou",
        SUBSIDIES,
        {"c": hz_people.elderly_card, "first": 5},
        token=issue("hangzhou", [Scope.CARDS_READ]),
    )
    assert codes_of(refused) == ["PERMISSION_DENIED"]


# --- service points ----------------------------------------------------------------------------------


def test_service_points_search(client, hz_people):
    token = issue("hangzhou", [Scope.SERVICE_POINTS_READ])

    def codes(variables):
        data = data_of(gql(client, "hangzhou", POINTS, {"first": 10, **variables}, token=token))
        return [e["node"]["code"] for e in data["servicePoints"]["edges"]]

    assert codes({}) == ["hz-sp-1", "hz-sp-2", "hz-sp-3"]
    assert codes({"filter": {"departmentKind": "BANK"}}) == ["hz-sp-3"]
    assert codes({"filter": {"service": "LOSS"}}) == ["hz-sp-1", "hz-sp-3"]
    assert codes({"filter": {"text": "解放路"}}) == ["hz-sp-1", "hz-sp-3"]
    assert codes({"filter": {"text": "解放路 银行"}}) == [
        "hz-sp-3"
    ]  # every word, in name, address or department
    assert codes({"filter": {"departmentKind": "HRSS", "service": "TOPUP"}}) == []
    page = data_of(gql(client, "hangzhou", POINTS, {"first": 2}, token=token))["servicePoints"]
    node = page["edges"][0]["node"]
    assert node == {
        "code": "hz-sp-1",
        "name": "市民卡中心",
        "address": "解放路 1 号",
        "hours": "周一至周五 8:30-17:00",
        "services": ["APPLY", "ISSUE", "LOSS", "REPLACE"],
        "department": {"code": "hz-hrss", "kind": "HRSS", "name": "hz 人社局"},
    }
    assert page["pageInfo"]["hasNextPage"] is True
    assert codes({"after": page["pageInfo"]["endCursor"]}) == ["hz-sp-3"]
    bad = gql(client, "hangzhou", POINTS, {"first": 5, "filter": {"service": "SWIM"}}, token=token)
    assert codes_of(bad) == ["BAD_REQUEST"]  # not a ServiceKind: refused before execution
    long = gql(client, "hangzhou", POINTS, {"first": 5, "filter": {"text": "x" * 101}}, token=token)
    assert codes_of(long) == ["INVALID_ARGUMENT"]
    refused = gql(client, "hangzhou", POINTS, {"first": 5}, token=issue("hangzhou", [Scope.CARDS_READ]))
    assert codes_of(refused) == ["PERMISSION_DENIED"]


# --- mutations: errors as data, idempotent, refusals write nothing -----------------------------------


def card_rows(tenant_obj) -> list[tuple[str, str]]:
    from citycard.tenants.cards.models import Card, HotlistEntry

    with tenant_context(tenant_obj):
        return [
            *Card.objects.order_by("card_no").values_list("card_no", "state"),
            *HotlistEntry.objects.order_by("card_no").values_list("card_no", "reason"),
        ]


def test_card_report_lost_idempotent(client, tenant, hz_people):
    from citycard.tenants.cards.selectors import hotlist_payload

    hangzhou = tenant("hangzhou")
    token = issue("hangzhou", [Scope.CARDS_REPORT_LOSS], name="Bank app")
    variables = {"c": hz_people.plain_card, "i": hz_people.plain_id, "r": "STOLEN"}
    first = data_of(gql(client, "hangzhou", REPORT, variables, token=token))["cardReportLost"]
    assert first["errors"] == []
    assert (first["card"]["state"], first["alreadyReported"]) == ("FROZEN", False)
    assert first["reportedAt"] == first["card"]["frozenAt"]
    with tenant_context(hangzhou):
        assert hz_people.plain_card in hotlist_payload()["cards"]
    rows = card_rows(hangzhou)
    # a retry by the same key: the earlier report, not an error, nothing written again
    again = data_of(gql(client, "hangzhou", REPORT, variables, token=token))["cardReportLost"]
    assert again["errors"] == [] and again["alreadyReported"] is True
    assert again["reportedAt"] == first["reportedAt"]
    assert card_rows(hangzhou) == rows
    # another key finds the card frozen: refused, naming the state
    other = data_of(
        gql(client, "hangzhou", REPORT, variables, token=issue("hangzhou", [Scope.CARDS_REPORT_LOSS]))
    )
    assert other["cardReportLost"]["card"] is None
    assert [(e["field"], e["code"]) for e in other["cardReportLost"]["errors"]] == [
        ("cardNumber", "INVALID_STATE")
    ]
    assert "冻结" in other["cardReportLost"]["errors"][0]["message"]  # the state's label, zh-hans
    # the verification read is logged (the card's holder, the field), never the ID number itself
    logged = reads(hangzhou)
    assert logged[-1]["reads"][0]["type"] == "cardholder" and logged[-1]["reads"][0]["fields"] == [
        "id_number"
    ]
    assert all(hz_people.plain_id not in json.dumps(entry) for entry in logged)


def test_card_report_lost_refusals_write_nothing(client, tenant, hz_people):
    hangzhou = tenant("hangzhou")
    token = issue("hangzhou", [Scope.CARDS_REPORT_LOSS])
    rows = card_rows(hangzhou)
    cases = [
        ({"c": hz_people.elderly_card, "i": hz_people.plain_id}, ("idNumber", "ID_MISMATCH")),
        ({"c": hz_people.anonymous_card, "i": hz_people.plain_id}, ("cardNumber", "ANONYMOUS_CARD")),
        ({"c": UNKNOWN, "i": hz_people.plain_id}, ("cardNumber", "NOT_FOUND")),
        ({"c": "12345", "i": hz_people.plain_id}, ("cardNumber", "INVALID")),
        ({"c": hz_people.elderly_card, "i": "330102"}, ("idNumber", "INVALID")),
        ({"c": hz_people.elderly_card, "i": hz_people.elderly_id[:17] + "0"}, ("idNumber", "BAD_CHECKSUM")),
    ]
    for variables, expected in cases:
        payload = data_of(gql(client, "hangzhou", REPORT, variables, token=token))["cardReportLost"]
        assert payload["card"] is None and payload["reportedAt"] is None, variables
        assert [(e["field"], e["code"]) for e in payload["errors"]] == [expected], (variables, payload)
        assert variables["i"] not in json.dumps(payload)
    assert card_rows(hangzhou) == rows
    refused = gql(
        client,
        "hangzhou",
        REPORT,
        {"c": hz_people.elderly_card, "i": hz_people.elderly_id},
        token=issue("hangzhou", [Scope.CARDS_READ]),
    )
    assert codes_of(refused) == ["PERMISSION_DENIED"]
    assert refused.json()["data"] == {"cardReportLost": None}
    assert card_rows(hangzhou) == rows


def test_card_apply_idempotent_and_refusals(client, tenant, hz_people):
    hangzhou = tenant("hangzhou")
    token = issue("hangzhou", [Scope.CARDS_APPLY], name="Service app")

    def apply(scheme, id_number, key, token=token):
        variables = {"s": scheme, "i": id_number, "k": key}
        return data_of(gql(client, "hangzhou", APPLY, variables, token=token))["cardApply"]

    anonymous = apply("03", None, "req-1")
    assert anonymous["errors"] == []
    assert (anonymous["card"]["state"], anonymous["card"]["named"], anonymous["card"]["scheme"]) == (
        "APPLIED",
        False,
        {"code": "03"},
    )
    assert anonymous["card"]["number"].startswith("33010003")
    assert apply("03", None, "req-1")["card"] == anonymous["card"]  # a retry: the same card
    # the same request key of another app is another request
    other_app = apply("03", None, "req-1", token=issue("hangzhou", [Scope.CARDS_APPLY]))
    assert other_app["card"]["number"] != anonymous["card"]["number"]
    ecode = apply("04", hz_people.elderly_id, "req-2")
    assert (
        ecode["errors"] == [] and ecode["card"]["named"] is True and ecode["card"]["scheme"] == {"code": "04"}
    )
    rows = card_rows(hangzhou)
    cases = [
        (("04", hz_people.elderly_id, "req-3"), ("schemeCode", "ONE_PER_PERSON")),
        (("01", hz_people.plain_id, "req-4"), ("schemeCode", "ONE_PER_PERSON")),
        (("02", hz_people.plain_id, "req-5"), ("schemeCode", "NOT_ELIGIBLE")),
        (("01", None, "req-6"), ("idNumber", "INVALID")),  # a real-name scheme needs the cardholder
        (("01", hz_people.unregistered_id, "req-7"), ("idNumber", "CARDHOLDER_NOT_FOUND")),
        (("99", None, "req-8"), ("schemeCode", "NOT_FOUND")),
        (("03", None, ""), ("requestKey", "INVALID")),
        (("03", None, "k" * 51), ("requestKey", "INVALID")),
        (("03", "33010219500501121X", "req-9"), ("idNumber", "BAD_CHECKSUM")),
        (("01", hz_people.elderly_id, "req-1"), ("requestKey", "CONFLICT")),  # req-1 was another application
    ]
    for args, expected in cases:
        payload = apply(*args)
        assert payload["card"] is None, args
        assert [(e["field"], e["code"]) for e in payload["errors"]] == [expected], (args, payload)
    assert card_rows(hangzhou) == rows
    refused = gql(
        client, "hangzhou", APPLY, {"s": "03", "k": "x"}, token=issue("hangzhou", [Scope.CARDS_READ])
    )
    assert codes_of(refused) == ["PERMISSION_DENIED"]
    assert card_rows(hangzhou) == rows


def test_card_apply_in_a_county_is_refused(client, tenant):
    from citycard.platform.models import Tenant

    county = Tenant.objects.filter(kind="county").order_by("code").first()
    token = issue(county.code, [Scope.CARDS_APPLY])
    payload = data_of(gql(client, county.code, APPLY, {"s": "03", "k": "c-1"}, token=token))["cardApply"]
    assert [e["code"] for e in payload["errors"]] == ["COUNTY_READ_ONLY"]


def test_costs_of_the_partner_fields(client, hz_people):
    token = issue("hangzhou")

    def cost(query: str) -> int:
        return gql(client, "hangzhou", query, token=token).json()["extensions"]["cost"]["requestedQueryCost"]

    number = hz_people.elderly_card
    # card 1 + (transactions 1 + terminal 1) × 20 + balance 2
    txs = "transactions(first: 20) { edges { node { id terminal { terminalId } } } }"
    assert cost(f'{{ card(number: "{number}") {{ state {txs} balance {{ accountFen }} }} }}') == 1 + 40 + 2
    # (page 1 + programme 1 + items 1) × 50
    payments = "edges { node { amountFen programme { code } items { item } } }"
    assert cost(f'{{ subsidyPayments(cardNumber: "{number}", first: 50) {{ {payments} }} }}') == 150
    assert cost("{ servicePoints(first: 100) { edges { node { code department { code } } } } }") == 200
    verify = (
        f'{{ cardholderVerify(cardNumber: "{number}", idNumber: "{hz_people.elderly_id}") {{ matches }} }}'
    )
    assert cost(verify) == 5
    mutation = 'mutation { cardApply(schemeCode: "03", requestKey: "c") { card { number } errors { code } } }'
    assert cost(mutation) == 10 + 1 + 1
    too_many = " ".join(
        f'c{i}: subsidyPayments(cardNumber: "{number}", first: 100) {{ {payments} }}' for i in range(4)
    )
    response = gql(client, "hangzhou", "{ " + too_many + " }", token=token)
    assert codes_of(response) == ["QUERY_TOO_COSTLY"]


def test_partner_reads_appear_in_the_cardholders_access_log(client, tenant, hz_people):
    """What a partner app read of a cardholder through its key is in that cardholder's access log, with the
    key; another cardholder's log does not show it."""
    from citycard.tenants.cards.models import Card
    from citycard.tenants.cards.selectors import cardholder_access_log

    token = issue("hangzhou", [Scope.CARDS_READ], name="Library app")
    assert data_of(gql(client, "hangzhou", CARD, {"n": hz_people.elderly_card}, token=token))["card"]
    with tenant_context(tenant("hangzhou")):
        holder = Card.objects.get(card_no=hz_people.elderly_card).cardholder_id
        other = Card.objects.get(card_no=hz_people.plain_card).cardholder_id
        reads = [e for e in cardholder_access_log(cardholder_id=holder) if e.channel == "api_key"]
        assert len(reads) == 1 and reads[0].reader.startswith("apikey:") and reads[0].purpose
        assert not [e for e in cardholder_access_log(cardholder_id=other) if e.channel == "api_key"]


def test_card_report_lost_refuses_an_anonymous_card_and_a_bad_card_number_as_data(client, tenant, hz_people):
    """The service's rule (cards.services.card_loss_report_check) and the one card-number check
    (terminal_kit.cardno.card_number_clean), answered as errors with codes; nothing written."""
    hangzhou = tenant("hangzhou")
    token = issue("hangzhou", [Scope.CARDS_REPORT_LOSS], name="Bank app")
    rows = card_rows(hangzhou)
    anonymous = data_of(
        gql(client, "hangzhou", REPORT, {"c": hz_people.anonymous_card, "i": hz_people.plain_id}, token=token)
    )["cardReportLost"]
    assert anonymous["card"] is None
    assert [(e["field"], e["code"]) for e in anonymous["errors"]] == [("cardNumber", "ANONYMOUS_CARD")]
    good = hz_people.plain_card
    bad_digit = good[:-1] + str((int(good[-1]) + 1) % 10)
    for number, code in ((bad_digit, "BAD_CHECKSUM"), (good[:16], "INVALID"), ("３" * 19, "INVALID")):
        answer = data_of(gql(client, "hangzhou", REPORT, {"c": number, "i": hz_people.plain_id}, token=token))
        errors = answer["cardReportLost"]["errors"]
        assert [(e["field"], e["code"]) for e in errors] == [("cardNumber", code)], number
    assert card_rows(hangzhou) == rows


def test_card_number_arguments_of_queries_take_exactly_19_digits(client, hz_people):
    token = issue("hangzhou", [Scope.CARDS_READ])
    short = hz_people.plain_card[:16]
    answer = gql(
        client, "hangzhou", "query($n: String!) { card(number: $n) { number } }", {"n": short}, token=token
    )
    assert codes_of(answer) == ["INVALID_ARGUMENT"]
    assert "19 digits" in answer.json()["errors"][0]["message"]
    spaced = gql(
        client,
        "hangzhou",
        "query($n: String!) { card(number: $n) { number } }",
        {"n": f" {hz_people.plain_card} "},
        token=token,
    )
    assert data_of(spaced)["card"]["number"] == hz_people.plain_card
