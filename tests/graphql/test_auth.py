"""Who may call the tenant endpoint: a valid, unexpired, unrevoked key of that very tenant, within its scopes."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from citycard.platform import services
from citycard.platform.models import ApiKey

from .conftest import codes_of, data_of, gql, issue

pytestmark = pytest.mark.django_db
ME = "{ me { keyId name tokenLast4 scopes expiresAt tenant { code divisionCode kind } } }"


def test_me_describes_the_key(client):
    token = issue("hangzhou", ["transactions:read"], name="Metro app")
    me = data_of(gql(client, "hangzhou", ME, token=token))["me"]
    assert me["keyId"] == services.api_key_parse(token)
    assert (me["name"], me["tokenLast4"], me["scopes"]) == ("Metro app", token[-4:], ["transactions:read"])
    assert me["tenant"] == {"code": "hangzhou", "divisionCode": "330100", "kind": "CITY"}


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, "UNAUTHENTICATED"),
        ("Basic dXNlcjpwYXNz", "INVALID_TOKEN"),
        ("Bearer ", "INVALID_TOKEN"),
        ("Bearer not-a-key", "INVALID_TOKEN"),
        ("Bearer cck_deadbeef_" + "x" * 43, "INVALID_TOKEN"),
    ],
)
def test_missing_or_malformed_keys_are_refused(client, authorization, code):
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization is not None else {}
    response = client.post(
        "/graphql/", {"query": ME}, content_type="application/json", HTTP_HOST="hangzhou.localhost", **headers
    )
    assert response.status_code == 401
    assert codes_of(response) == [code]
    assert "data" not in response.json()


def test_a_key_with_a_wrong_secret_is_refused(client):
    token = issue("hangzhou")
    forged = token[:-4] + ("AAAA" if token[-4:] != "AAAA" else "BBBB")
    assert codes_of(gql(client, "hangzhou", ME, token=forged)) == ["INVALID_TOKEN"]


def test_a_key_is_refused_on_another_tenants_domain(client, jx_fleet):
    token = issue("hangzhou")
    response = gql(
        client, "jiaxing", "{ transactions(first: 5) { edges { node { cardNumber } } } }", token=token
    )
    assert response.status_code == 401
    assert codes_of(response) == ["WRONG_TENANT"]
    assert "data" not in response.json()
    assert "330400" not in response.content.decode()


def test_a_key_is_refused_on_the_platform_domain(client):
    token = issue("hangzhou")
    response = gql(client, "", "{ tenants(first: 5) { edges { node { code } } } }", token=token)
    assert response.status_code == 401
    assert codes_of(response) == ["WRONG_TENANT"]
    assert "data" not in response.json()


def test_revoked_key_is_refused_at_once(client):
    token = issue("hangzhou")
    assert data_of(gql(client, "hangzhou", ME, token=token))
    services.api_key_revoke(tenant_code="hangzhou", key_id=services.api_key_parse(token), reason="leaked")
    response = gql(client, "hangzhou", ME, token=token)
    assert (response.status_code, codes_of(response)) == (401, ["TOKEN_REVOKED"])


def test_expired_key_is_refused(client):
    token = issue("hangzhou")
    ApiKey.objects.filter(key_id=services.api_key_parse(token)).update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    response = gql(client, "hangzhou", ME, token=token)
    assert (response.status_code, codes_of(response)) == (401, ["TOKEN_EXPIRED"])


def test_key_of_a_suspended_tenant_is_refused(client):
    token = issue("hangzhou")
    services.tenant_suspend(code="hangzhou", reason="audit", actor="test")
    response = gql(client, "hangzhou", ME, token=token)
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("query", "scope"),
    [
        ("{ transactions(first: 1) { edges { cursor } } }", "transactions:read"),
        (
            '{ cardTransactions(cardNumber: "3301000000000009000", first: 1) { edges { cursor } } }',
            "transactions:read",
        ),
        ("{ terminals(first: 1) { edges { cursor } } }", "terminals:read"),
        ('{ terminal(terminalId: "HZ-GQL-1") { terminalId } }', "terminals:read"),
    ],
)
def test_every_scoped_field_refuses_a_key_without_its_scope(client, hz_fleet, query, scope):
    token = issue(
        "hangzhou", [s for s in ["cards:read", "terminals:read", "transactions:read"] if s != scope]
    )
    response = gql(client, "hangzhou", query, token=token)
    body = response.json()
    assert response.status_code == 200
    assert codes_of(response) == ["PERMISSION_DENIED"]
    assert body["errors"][0]["extensions"]["required"] == [scope]
    assert scope in body["errors"][0]["message"]
    assert all(value is None for value in body["data"].values())


def test_last_used_is_recorded_without_a_write_per_request(client):
    token = issue("hangzhou")
    key_id = services.api_key_parse(token)
    assert ApiKey.objects.get(key_id=key_id).last_used_at is None
    data_of(gql(client, "hangzhou", ME, token=token))
    first = ApiKey.objects.get(key_id=key_id).last_used_at
    assert first is not None
    data_of(gql(client, "hangzhou", ME, token=token))
    assert ApiKey.objects.get(key_id=key_id).last_used_at == first
