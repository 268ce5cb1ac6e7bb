"""Partner apps and service points over GraphQL: a holder's entitlements, buying the park pass from the
online account, and acceptance checks by card or citizen code with ``service_points:accept`` — errors as
data, a retried use counted once, a constant number of queries per check."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import tenant_context

from .conftest import data_of, gql, issue

pytestmark = pytest.mark.django_db

CHECK = """mutation($sp: String!, $card: String, $code: String, $key: String) {
  acceptanceCheck(servicePoint: $sp, cardNumber: $card, citizenCode: $code, useKey: $key) {
    decision { allowed reason maskedName entitlementType remaining } errors { field code message } } }"""


@pytest.fixture
def park(tenant, hz_people):
    from citycard.tenants.departments import services as d
    from citycard.tenants.entitlements import services as s

    with tenant_context(tenant("hangzhou")):
        d.department_create(code="hz-parks", kind="culture_tourism", name="杭州市园文局", actor="t")
        d.service_point_create(
            department="hz-parks",
            code="west-lake-gate",
            name="西湖景区北门",
            address="北山街",
            hours="6:00-22:00",
            services=["entry"],
            actor="t",
        )
        s.entitlement_type_create(
            role="city_admin",
            code="park-pass",
            name="西湖公园年卡",
            department="hz-parks",
            service_points=["west-lake-gate"],
            price_fen=1000,
            period_days=365,
            quota_period="day",
            quota=2,
            actor="t",
        )
        s.entitlement_type_approve(code="park-pass", actor="city-admin", role="city_admin")
    return hz_people


def test_buy_list_and_check_acceptance_with_card_and_code(client, tenant, park):
    token = issue("hangzhou")
    bought = data_of(
        gql(
            client,
            "hangzhou",
            f'mutation {{ entitlementBuy(cardNumber: "{park.elderly_card}", entitlementType: "park-pass", '
            'requestKey: "r1") { entitlement { source validFrom validTo type { code priceFen } } '
            "errors { code } } }",
            token=token,
        )
    )["entitlementBuy"]
    assert bought["errors"] == [] and bought["entitlement"]["source"] == "bought"
    assert bought["entitlement"]["type"] == {"code": "park-pass", "priceFen": 1000}
    listed = data_of(
        gql(
            client,
            "hangzhou",
            f'{{ cardEntitlements(cardNumber: "{park.elderly_card}") {{ entitlements {{ type {{ code }} }} }} }}',
            token=token,
        )
    )["cardEntitlements"]["entitlements"]
    assert listed == [{"type": {"code": "park-pass"}}]

    # No data grant for the parks department yet: nothing at all, as data.
    refused = data_of(
        gql(client, "hangzhou", CHECK, {"sp": "west-lake-gate", "card": park.elderly_card}, token=token)
    )["acceptanceCheck"]
    assert refused["decision"] is None and refused["errors"][0]["code"] == "NO_GRANT"

    from citycard.tenants.departments.services import data_grant_create
    from citycard.tenants.entitlements.acceptance import citizen_code_issue

    with tenant_context(tenant("hangzhou")):
        data_grant_create(
            department="hz-parks",
            fields=["name"],
            purpose="入园核验",
            valid_from=dt.date(2020, 1, 1),
            actor="t",
        )
        code = citizen_code_issue(card_no=park.elderly_card)
    variables = {"sp": "west-lake-gate", "card": park.elderly_card, "key": "gate-use-1"}
    with tenant_context(tenant("hangzhou")), CaptureQueriesContext(connection) as first:
        yes = data_of(gql(client, "hangzhou", CHECK, variables, token=token))["acceptanceCheck"]["decision"]
    assert yes == {
        "allowed": True,
        "reason": "ok",
        "maskedName": yes["maskedName"],
        "entitlementType": "park-pass",
        "remaining": 1,
    }
    assert yes["maskedName"].endswith("*") and len(yes["maskedName"]) >= 2
    retry = data_of(gql(client, "hangzhou", CHECK, variables, token=token))["acceptanceCheck"]["decision"]
    assert retry["allowed"]  # the same use key: counted once
    by_code = data_of(gql(client, "hangzhou", CHECK, {"sp": "west-lake-gate", "code": code}, token=token))
    assert by_code["acceptanceCheck"]["decision"]["remaining"] == 0
    replayed = data_of(gql(client, "hangzhou", CHECK, {"sp": "west-lake-gate", "code": code}, token=token))
    assert replayed["acceptanceCheck"]["decision"]["reason"] == "code_replayed"
    with tenant_context(tenant("hangzhou")), CaptureQueriesContext(connection) as third:
        used_up = data_of(
            gql(client, "hangzhou", CHECK, {"sp": "west-lake-gate", "card": park.elderly_card}, token=token)
        )
    assert used_up["acceptanceCheck"]["decision"]["reason"] == "quota_used_up"
    assert len(third.captured_queries) <= len(first.captured_queries)
