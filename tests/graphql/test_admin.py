"""API keys in the admin: a city administrator issues (token shown once) and revokes its own tenant's."""

from __future__ import annotations

import pytest

from citycard.platform import services
from citycard.platform.models import ApiKey

from .conftest import issue

pytestmark = pytest.mark.django_db
ADD = "/admin/platform/apikey/add/"
LIST = "/admin/platform/apikey/"


def login(client, username, role, tenant_code):
    user = services.user_create(
        username=username, role=role, password="x", tenant_code=tenant_code, check_password=False
    )
    client.force_login(user)


def test_city_admin_issues_a_key_and_sees_the_token_once(client):
    login(client, "hz-admin", "city_admin", "hangzhou")
    host = {"HTTP_HOST": "hangzhou.localhost"}
    response = client.post(
        ADD,
        {"name": "Library app", "scopes": ["cards:read", "transactions:read"], "expires_at": ""},
        follow=True,
        **host,
    )
    assert response.status_code == 200
    key = ApiKey.objects.get(name="Library app")
    assert key.tenant.code == "hangzhou" and key.scopes == ["cards:read", "transactions:read"]
    shown = [str(m) for m in response.context["messages"]]
    assert any(
        f"cck_{key.key_id}_" in m and m.split(": ", 1)[1].split(" ")[0].endswith(key.last4) for m in shown
    )
    page = client.get(LIST, **host).content.decode()
    assert key.key_id in page and f"…{key.last4}" in page and f"cck_{key.key_id}_" not in page


def test_city_admin_sees_and_revokes_only_its_own_keys(client):
    hz_token, jx_token = issue("hangzhou"), issue("jiaxing")
    hz_id, jx_id = services.api_key_parse(hz_token), services.api_key_parse(jx_token)
    login(client, "jx-admin", "city_admin", "jiaxing")
    host = {"HTTP_HOST": "jiaxing.localhost"}
    page = client.get(LIST, **host).content.decode()
    assert jx_id in page and hz_id not in page
    hz_pk = ApiKey.objects.get(key_id=hz_id).pk
    jx_pk = ApiKey.objects.get(key_id=jx_id).pk
    client.post(LIST, {"action": "revoke_selected", "_selected_action": [hz_pk, jx_pk]}, **host)
    assert ApiKey.objects.get(key_id=jx_id).revoked_at is not None
    assert ApiKey.objects.get(key_id=hz_id).revoked_at is None


def test_county_officer_cannot_issue(client):
    login(client, "tl-officer", "county_officer", "tonglu")
    response = client.post(ADD, {"name": "x", "scopes": ["cards:read"]}, HTTP_HOST="tonglu.localhost")
    assert response.status_code == 403
    assert not ApiKey.objects.filter(name="x").exists()
