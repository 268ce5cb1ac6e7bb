"""The platform endpoint: platform users by session, role scopes, tenants with counties, networks with
members, and the tenant mutations with their errors as data."""

from __future__ import annotations

import pytest

from citycard.platform import services
from citycard.platform.models import Tenant

from .conftest import codes_of, data_of, gql

pytestmark = pytest.mark.django_db
TENANTS = """query($first: Int, $after: String, $kind: TenantKind) {
  tenants(first: $first, after: $after, kind: $kind) {
    edges { node { code divisionCode kind status domain parent { code } counties { code } networks { code } } }
    pageInfo { hasNextPage endCursor }
  }
}"""
NETWORKS = """{ roamingNetworks { code nameEn eligiblePrefixes members { tenant { code } joinedOn via { code } } } }"""
SUSPEND = """mutation($code: String!, $reason: String!) {
  tenantSuspend(code: $code, reason: $reason) { tenant { code status statusReason } errors { field message code } }
}"""
ACTIVATE = """mutation($code: String!) {
  tenantActivate(code: $code) { tenant { code status } errors { field message code } }
}"""


def login(client, role: str, tenant_code: str | None = None):
    user = services.user_create(
        username=f"{role}-gql", role=role, password="x", tenant_code=tenant_code, check_password=False
    )
    client.force_login(user)
    return user


def test_anonymous_and_tenant_users_are_refused(client):
    response = gql(client, "", "{ me { username } }")
    assert (response.status_code, codes_of(response)) == (401, ["UNAUTHENTICATED"])
    login(client, "city_admin", "hangzhou")
    response = gql(client, "", "{ me { username } }")
    assert (response.status_code, codes_of(response)) == (403, ["PERMISSION_DENIED"])


def test_a_platform_session_does_not_open_a_tenant_endpoint(client):
    login(client, "platform_operator")
    response = gql(client, "hangzhou", "{ me { keyId } }")
    assert (response.status_code, codes_of(response)) == (401, ["UNAUTHENTICATED"])


def test_clearing_staff_read_tenants_with_counties(client):
    login(client, "clearing_staff")
    assert data_of(gql(client, "", "{ me { username role scopes } }"))["me"] == {
        "username": "clearing_staff-gql",
        "role": "clearing_staff",
        "scopes": ["clearing:manage", "clearing:read", "networks:read", "tenants:read"],
    }
    nodes = [e["node"] for e in data_of(gql(client, "", TENANTS, {"first": 100}))["tenants"]["edges"]]
    by_code = {n["code"]: n for n in nodes}
    assert [n["divisionCode"] for n in nodes] == sorted(n["divisionCode"] for n in nodes)
    assert "public" not in by_code
    assert by_code["hangzhou"]["counties"] == [{"code": "tonglu"}]
    assert by_code["hangzhou"]["networks"] == [{"code": "yrd"}]
    assert by_code["tonglu"]["parent"] == {"code": "hangzhou"}
    assert by_code["tonglu"]["networks"] == [{"code": "yrd"}]  # through its city
    assert by_code["tonglu"]["kind"] == "COUNTY" and by_code["jiaxing"]["domain"] == "jiaxing.localhost"
    counties = data_of(gql(client, "", TENANTS, {"first": 10, "kind": "COUNTY"}))["tenants"]["edges"]
    assert {e["node"]["code"] for e in counties} >= {"tonglu", "haiyan"}
    one = data_of(gql(client, "", '{ tenant(code: "haiyan") { nameEn parent { code } } }'))["tenant"]
    assert one["parent"] == {"code": "jiaxing"} and one["nameEn"]
    assert data_of(gql(client, "", '{ tenant(code: "public") { code } }'))["tenant"] is None


def test_networks_with_members_and_counties(client):
    login(client, "clearing_staff")
    networks = {n["code"]: n for n in data_of(gql(client, "", NETWORKS))["roamingNetworks"]}
    yrd = [(m["tenant"]["code"], (m["via"] or {}).get("code")) for m in networks["yrd"]["members"]]
    assert ("hangzhou", None) in yrd and ("tonglu", "hangzhou") in yrd and ("haiyan", "jiaxing") in yrd
    assert yrd.index(("tonglu", "hangzhou")) == yrd.index(("hangzhou", None)) + 1
    assert {m["tenant"]["code"] for m in networks["gba"]["members"]} >= {"dongguan", "shenzhen"}
    assert "33" in networks["yrd"]["eligiblePrefixes"]
    on = data_of(
        gql(client, "", '{ roamingNetwork(code: "yrd") { members(on: "2019-12-31") { tenant { code } } } }')
    )
    assert on["roamingNetwork"]["members"] == []


def test_clearing_staff_cannot_suspend(client):
    login(client, "clearing_staff")
    response = gql(client, "", SUSPEND, {"code": "jiaxing", "reason": "audit"})
    assert codes_of(response) == ["PERMISSION_DENIED"]
    assert response.json()["data"] == {"tenantSuspend": None}
    assert Tenant.objects.get(code="jiaxing").status == "active"


def test_operator_suspends_and_activates_with_errors_as_data(client):
    login(client, "platform_operator")
    result = data_of(gql(client, "", SUSPEND, {"code": "jiaxing", "reason": " "}))["tenantSuspend"]
    assert result == {
        "tenant": None,
        "errors": [{"field": "reason", "message": "停用租户必须说明原因", "code": "REASON_REQUIRED"}],
    }
    # The message follows the request's language; the code is the same in both.
    english = gql(client, "", SUSPEND, {"code": "jiaxing", "reason": " "}, HTTP_ACCEPT_LANGUAGE="en")
    assert data_of(english)["tenantSuspend"]["errors"] == [
        {"field": "reason", "message": "a reason is required to suspend a tenant", "code": "REASON_REQUIRED"}
    ]
    result = data_of(gql(client, "", SUSPEND, {"code": "atlantis", "reason": "x"}))["tenantSuspend"]
    assert result["errors"][0]["code"] == "NOT_FOUND" and result["errors"][0]["field"] == "tenant"
    result = data_of(gql(client, "", SUSPEND, {"code": "jiaxing", "reason": "settlement audit"}))[
        "tenantSuspend"
    ]
    assert result == {
        "tenant": {"code": "jiaxing", "status": "SUSPENDED", "statusReason": "settlement audit"},
        "errors": [],
    }
    again = data_of(gql(client, "", SUSPEND, {"code": "jiaxing", "reason": "x"}))["tenantSuspend"]
    assert again["errors"][0]["code"] == "ALREADY_SUSPENDED"
    back = data_of(gql(client, "", ACTIVATE, {"code": "jiaxing"}))["tenantActivate"]
    assert back == {"tenant": {"code": "jiaxing", "status": "ACTIVE"}, "errors": []}
    twice = data_of(gql(client, "", ACTIVATE, {"code": "jiaxing"}))["tenantActivate"]
    assert twice["errors"][0]["code"] == "ALREADY_ACTIVE"


def test_the_platform_endpoint_is_csrf_protected(settings):
    from django.test import Client

    settings.GRAPHQL_GRAPHIQL = True
    browser = Client(enforce_csrf_checks=True)
    login(browser, "clearing_staff")
    refused = gql(browser, "", "{ me { username } }")
    assert refused.status_code == 403  # no CSRF token: Django refuses before the view runs
    page = browser.get("/graphql/", HTTP_HOST="localhost", HTTP_ACCEPT="text/html")
    assert page.status_code == 200 and "csrftoken" in page.cookies
    accepted = gql(browser, "", "{ me { username } }", HTTP_X_CSRFTOKEN=page.cookies["csrftoken"].value)
    assert data_of(accepted)["me"]["username"] == "clearing_staff-gql"
