"""Chinese first, English second (docs/configuration.md, "Languages"): every page speaks zh-hans unless the
browser's Accept-Language or the language switch (its cookie) asks for English; the switch is open on the
sign-in page and changes nothing but the language."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client

from citycard.platform import services as platform
from citycard.platform.models import Role

pytestmark = pytest.mark.django_db
PLATFORM = {"HTTP_HOST": "localhost"}
HANGZHOU = {"HTTP_HOST": "hangzhou.localhost"}
ENGLISH = {"HTTP_ACCEPT_LANGUAGE": "en-GB,en;q=0.9"}


def _signed_in(username: str, role: str, tenant_code: str | None = None) -> Client:
    client = Client()
    user = platform.user_create(
        username=username, role=role, tenant_code=tenant_code, password="a-long-password-1", actor="t"
    )
    client.force_login(user)
    return client


def test_chinese_is_the_default_and_english_is_the_second_language():
    assert settings.LANGUAGE_CODE == "zh-hans"
    assert [code for code, _name in settings.LANGUAGES] == ["zh-hans", "en"]
    assert "django.middleware.locale.LocaleMiddleware" in settings.MIDDLEWARE


def test_the_console_reads_chinese_by_default_and_english_when_the_browser_asks():
    clerk = _signed_in("lang-clerk", Role.CLEARING_STAFF)
    chinese = clerk.get("/console/", **PLATFORM).content.decode()
    assert '<html lang="zh-hans">' in chinese
    assert "清算控制台" in chinese and "待处理" in chinese and "清算周期" in chinese
    assert "Needs a person now" not in chinese and "Clearing console" not in chinese
    assert "清算人员" in chinese  # the role's label, a model choice

    english = clerk.get("/console/", **PLATFORM, **ENGLISH).content.decode()
    assert '<html lang="en">' in english
    assert "Clearing console" in english and "Needs a person now" in english and "Clearing staff" in english
    assert "待处理" not in english and "清算控制台" not in english


def test_the_language_switch_sets_a_cookie_that_outlasts_the_browser_default_and_changes_nothing_else():
    clerk = _signed_in("lang-clerk-2", Role.CLEARING_STAFF)
    page = clerk.get("/console/", **PLATFORM).content.decode()
    assert 'action="/i18n/setlang/"' in page and 'value="en"' in page  # the switch offers the other language

    switched = clerk.post("/i18n/setlang/", {"language": "en", "next": "/console/"}, **PLATFORM)
    assert switched.status_code == 302 and switched["Location"] == "/console/"
    assert switched.cookies[settings.LANGUAGE_COOKIE_NAME].value == "en"
    english = clerk.get("/console/", **PLATFORM, HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()
    assert "Needs a person now" in english and 'value="zh-hans"' in english

    clerk.post("/i18n/setlang/", {"language": "zh-hans", "next": "/console/"}, **PLATFORM)
    assert "待处理" in clerk.get("/console/", **PLATFORM, **ENGLISH).content.decode()

    # A language the site does not offer reads as the default; a next URL on another host is not followed.
    refused = clerk.post("/i18n/setlang/", {"language": "fr", "next": "https://evil.example/"}, **PLATFORM)
    assert refused["Location"] == "/"
    page = clerk.get("/console/", **PLATFORM).content.decode()
    assert '<html lang="zh-hans">' in page and "待处理" in page


def test_the_sign_in_page_has_the_switch_and_speaks_both_languages():
    anonymous = Client()
    chinese = anonymous.get("/admin/login/", **HANGZHOU).content.decode()
    assert "登录" in chinese and 'action="/i18n/setlang/"' in chinese
    english = anonymous.get("/admin/login/", **HANGZHOU, **ENGLISH).content.decode()
    assert "Log in" in english and "登录" not in english
    # Open without a session: the sign-in page's switch sets the cookie (and nothing else).
    switched = anonymous.post("/i18n/setlang/", {"language": "en", "next": "/admin/login/"}, **HANGZHOU)
    assert switched.status_code == 302 and switched.cookies[settings.LANGUAGE_COOKIE_NAME].value == "en"


def test_the_tenant_admin_names_models_fields_and_choices_in_chinese_or_english():
    city = _signed_in("lang-hz-admin", Role.CITY_ADMIN, "hangzhou")
    index = city.get("/admin/", **HANGZHOU).content.decode()
    assert "持卡人" in index and "卡种" in index and "市民卡管理" in index
    english_index = city.get("/admin/", **HANGZHOU, **ENGLISH).content.decode()
    assert (
        "Cardholders" in english_index and "Card schemes" in english_index and "持卡人" not in english_index
    )

    add = city.get("/admin/departments/department/add/", **HANGZHOU).content.decode()
    assert "人社" in add and "公安" in add  # DepartmentKind's choices
    assert (
        "Human resources &amp; social security"
        in city.get("/admin/departments/department/add/", **HANGZHOU, **ENGLISH).content.decode()
    )
