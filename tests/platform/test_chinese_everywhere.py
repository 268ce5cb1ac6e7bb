"""Chinese first, everywhere (docs/configuration.md, "Languages"): every model's name, every field's name and
every choice's label of the project has a Chinese translation, and the admin, the clearing console and the
city dashboard show none of those labels in English when the page speaks Chinese."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.admin.sites import all_sites
from django.test import Client
from django.urls import NoReverseMatch, reverse
from django.utils import translation

from citycard.platform.models import Role
from citycard.platform.reasons import LABELS
from citycard.platform.services import user_create
from tests.graphql.conftest import NEXT, SETTLE_AT, clear, day_records
from tests.interop.conftest import DAY, collect, send, yrd_transit  # noqa: F401 (fixtures)

# Words that read the same in both languages: codes, acronyms and proper nouns (a label equal to its
# English under zh-hans is allowed only for these).
SAME_IN_BOTH = {
    "ID",
    "TAC",
    "PIN",
    "URL",
    "API",
    "GTFS",
    "QR",
    "SAM",
    "PSAM",
    "MAC",
    "CSV",
    "JSON",
    "SHA-256",
}
PLATFORM = {"HTTP_HOST": "localhost"}
HANGZHOU = {"HTTP_HOST": "hangzhou.localhost"}


def _project_models() -> Iterator:
    for model in apps.get_models():
        if model.__module__.startswith("citycard."):
            yield model


def _labels() -> Iterator[tuple[str, object]]:
    """(where, label) for every model name, field name and choice label of the project."""
    for model in _project_models():
        meta = model._meta
        yield f"{meta.label}", meta.verbose_name
        yield f"{meta.label} (plural)", meta.verbose_name_plural
        for field in meta.get_fields():
            if field.auto_created and not field.concrete:
                continue  # reverse relations: named by the other side
            if getattr(field, "primary_key", False) and field.auto_created:
                continue
            yield f"{meta.label}.{field.name}", field.verbose_name
            for value, label in getattr(field, "flatchoices", None) or []:
                yield f"{meta.label}.{field.name}={value}", label
    for code, label in LABELS.items():
        yield f"reason {code}", label


def _english_and_chinese() -> list[tuple[str, str, str]]:
    rows = []
    for where, label in _labels():
        with translation.override("en"):
            english = str(label)
        with translation.override("zh-hans"):
            chinese = str(label)
        rows.append((where, english, chinese))
    return rows


def test_every_model_field_choice_and_reason_label_of_the_project_reads_chinese():
    untranslated = [
        (where, english)
        for where, english, chinese in _english_and_chinese()
        if chinese == english and re.search("[A-Za-z]", english) and english not in SAME_IN_BOTH
    ]
    assert untranslated == [], f"{len(untranslated)} labels with no Chinese: {untranslated[:20]}"
    assert len(_english_and_chinese()) > 500


def _english_labels() -> set[str]:
    """The English of every label with a Chinese of its own: one of these alone on a Chinese page is a miss."""
    return {
        english
        for _where, english, chinese in _english_and_chinese()
        if chinese != english and len(english) > 3
    }


TEXT = re.compile(r">([^<>]+)<")


def _english_left(html: str, english: set[str]) -> set[str]:
    """Text nodes (outside <script>, <style> and <code>) that are exactly a label's English."""
    html = re.sub(r"<(script|style|code|textarea)\b.*?</\1>", "", html, flags=re.S)
    return {text.strip().rstrip(":") for text in TEXT.findall(html)} & english


def _client(role: str, username: str, tenant_code: str | None) -> Client:
    client = Client()
    client.force_login(
        user_create(username=username, role=role, tenant_code=tenant_code, password="a-long-password-1")
    )
    return client


def _admin_pages(site_name: str, urlconf: str) -> list[str]:
    site = next(s for s in all_sites if s.name == site_name)
    pages = [reverse(f"{site.name}:index", urlconf=urlconf)]
    for model in site._registry:
        meta = model._meta
        for view in ("changelist", "add"):
            with contextlib.suppress(NoReverseMatch):
                pages.append(
                    reverse(f"{site.name}:{meta.app_label}_{meta.model_name}_{view}", urlconf=urlconf)
                )
    return pages


@pytest.mark.django_db
def test_admin_console_and_dashboard_pages_show_no_english_label_in_chinese(
    yrd_transit,  # noqa: F811
    send,  # noqa: F811
    collect,  # noqa: F811
):
    clear(send, collect, DAY, day_records(DAY, 1), now=SETTLE_AT)
    english = _english_labels()
    clerk = _client(Role.CLEARING_STAFF, "zh-clerk", None)
    operator = _client(Role.PLATFORM_OPERATOR, "zh-operator", None)
    city = _client(Role.CITY_ADMIN, "zh-hz-admin", "hangzhou")
    day = DAY.isoformat()
    walks = [
        (clerk, PLATFORM, "/console/"),
        (clerk, PLATFORM, f"/console/cycles/yrd/transit/{day}/"),
        (clerk, PLATFORM, f"/console/cycles/yrd/transit/{day}/exceptions/"),
        (clerk, PLATFORM, f"/console/cycles/yrd/transit/{day}/records/"),
        (clerk, PLATFORM, "/console/charts/"),
        (clerk, PLATFORM, "/console/disputes/"),
        (city, HANGZHOU, f"/dashboard/?date={NEXT.isoformat()}"),
    ]
    walks += [
        (operator, PLATFORM, page) for page in _admin_pages("platform_admin", settings.PUBLIC_SCHEMA_URLCONF)
    ]
    walks += [(city, HANGZHOU, page) for page in _admin_pages("tenant_admin", settings.ROOT_URLCONF)]
    seen, misses = 0, {}
    for client, host, page in walks:
        response = client.get(page, **host)
        if response.status_code == 403:  # an add page the role may not use
            continue
        assert response.status_code == 200, (page, response.status_code)
        html = response.content.decode()
        assert 'lang="zh-hans"' in html, page
        left = _english_left(html, english)
        if left:
            misses[page] = sorted(left)
        seen += 1
    assert seen > 40
    assert misses == {}, misses
