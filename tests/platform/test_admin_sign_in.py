"""The admin's sign-in form refuses, on the form, anyone who does not belong to the host's site: with the
right password they learn where to sign in instead, and no session is ever created for them."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session

from citycard.platform import services
from citycard.platform.models import Role

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-test-password"


@pytest.fixture
def users(db):
    make = services.user_create
    return {
        "operator": make(username="op", role=Role.PLATFORM_OPERATOR, password=PASSWORD),
        "clearing": make(username="clr", role=Role.CLEARING_STAFF, password=PASSWORD),
        "hz_admin": make(username="hz", role=Role.CITY_ADMIN, tenant_code="hangzhou", password=PASSWORD),
        "jx_admin": make(username="jx", role=Role.CITY_ADMIN, tenant_code="jiaxing", password=PASSWORD),
        "tl_officer": make(username="tl", role=Role.COUNTY_OFFICER, tenant_code="tonglu", password=PASSWORD),
    }


def _sign_in(client, host: str, username: str, password: str = PASSWORD):
    return client.post(
        "/admin/login/?next=/admin/",
        {"username": username, "password": password, "next": "/admin/"},
        HTTP_HOST=host,
        HTTP_ACCEPT_LANGUAGE="en",  # the refusals' wording; tests/platform/test_languages.py reads the Chinese
    )


@pytest.mark.parametrize(
    ("who", "host", "told"),
    [
        (
            "hz",
            "jiaxing.localhost",
            "hz is an account of 杭州市 Hangzhou (hangzhou): sign in on its own site, hangzhou.localhost.",
        ),
        ("tl", "hangzhou.localhost", "sign in on its own site, tonglu.localhost."),
        ("hz", "tonglu.localhost", "sign in on its own site, hangzhou.localhost."),
        (
            "op",
            "hangzhou.localhost",
            "op is a platform account: sign in on the platform&#x27;s site, localhost.",
        ),
        ("clr", "tonglu.localhost", "clr is a platform account"),
        (
            "jx",
            "localhost",
            "jx is an account of 嘉兴市 Jiaxing (jiaxing): sign in on its own site, jiaxing.localhost.",
        ),
    ],
)
def test_a_user_of_another_site_is_refused_on_the_form_without_a_session(client, users, who, host, told):
    sessions_before = Session.objects.count()
    response = _sign_in(client, host, who)
    assert response.status_code == 200  # the form again, not a redirect into the admin
    html = response.content.decode()
    assert told in html
    assert settings.SESSION_COOKIE_NAME not in response.cookies
    assert Session.objects.count() == sessions_before
    assert "_auth_user_id" not in client.session
    assert client.get("/admin/", HTTP_HOST=host).status_code == 302  # still not signed in


def test_a_wrong_password_says_nothing_about_the_accounts_site(client, users):
    html = _sign_in(client, "jiaxing.localhost", "hz", "not-the-password").content.decode()
    assert "Please enter the correct username and password" in html
    assert "hangzhou" not in html.lower()


def test_a_user_signs_in_on_their_own_site(client, users):
    for who, host in (("hz", "hangzhou.localhost"), ("tl", "tonglu.localhost"), ("op", "localhost")):
        response = _sign_in(client, host, who)
        assert (response.status_code, response["Location"]) == (302, "/admin/"), who
        assert settings.SESSION_COOKIE_NAME in response.cookies
        assert client.get("/admin/", HTTP_HOST=host).status_code == 200
        client.logout()


def test_a_session_of_one_site_opens_nothing_on_another(client, users):
    """The session table is shared by every site: a cookie carried to another host must count for nothing."""
    _sign_in(client, "hangzhou.localhost", "hz")
    assert client.get("/admin/", HTTP_HOST="hangzhou.localhost").status_code == 200
    assert client.get("/admin/", HTTP_HOST="jiaxing.localhost").status_code == 302
    assert client.get("/", HTTP_HOST="jiaxing.localhost").status_code == 302
    assert client.get("/status.json", HTTP_HOST="jiaxing.localhost").status_code == 403
