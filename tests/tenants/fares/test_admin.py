"""The city admin: rules listed, the simulator quotes with the trace, publishing from the admin."""

from __future__ import annotations

import pytest
from django_tenants.utils import tenant_context

from citycard.platform import services as platform_services
from citycard.platform.models import Role
from citycard.tenants.fares import seeds
from citycard.tenants.fares.models import LegRule

pytestmark = pytest.mark.django_db
HZ = "hangzhou.localhost"


@pytest.fixture
def hz_admin(client, published):
    published("hangzhou", seeds.HANGZHOU)
    user = platform_services.user_create(
        username="hzfares", role=Role.CITY_ADMIN, tenant_code="hangzhou", password="a-long-test-password"
    )
    client.force_login(user)
    return client


def test_rules_listed_with_links(hz_admin):
    page = hz_admin.get("/admin/fares/legrule/", HTTP_HOST=HZ)
    html = page.content.decode()
    assert page.status_code == 200 and "hz-monthly-pass" in html and "simulator/" in html
    for model in ("routeset", "timeframe", "fareproduct", "transferrule", "cap", "quota", "visitorpolicy"):
        assert hz_admin.get(f"/admin/fares/{model}/", HTTP_HOST=HZ).status_code == 200, model


def test_simulator_shows_fare_and_trace(hz_admin):
    page = hz_admin.get(
        "/admin/fares/legrule/simulator/",
        {"service": "bus", "route": "155", "at": "2026-11-23 08:10", "categories": "elderly", "scheme": "01"},
        HTTP_HOST=HZ,
    )
    html = page.content.decode()
    assert page.status_code == 200
    assert "Fare 100 fen (base 200 fen)" in html and "hz-elderly-peak" in html and "hangzhou rules v1" in html
    error = hz_admin.get(
        "/admin/fares/legrule/simulator/",
        {"service": "ferry", "route": "1", "at": "2026-11-23 08:10", "scheme": "01"},
        HTTP_HOST=HZ,
    )
    assert "no fare product for ferry route 1" in error.content.decode()


def test_publish_from_the_admin(hz_admin, tenant):
    with tenant_context(tenant("hangzhou")):
        LegRule.objects.filter(code="hz-card-91").update(value=8500)
    assert (
        "The rules are valid" in hz_admin.get("/admin/fares/legrule/publish/", HTTP_HOST=HZ).content.decode()
    )
    response = hz_admin.post("/admin/fares/legrule/publish/", HTTP_HOST=HZ)
    assert response.status_code == 302
    assert tenant("hangzhou").publications.filter(kind="fare_rules").count() == 2


def test_admin_forms_refuse_bad_rows_at_once(hz_admin):
    page = hz_admin.post(
        "/admin/fares/routeset/add/", {"code": "night", "service": "bus", "ranges": "499-1"}, HTTP_HOST=HZ
    )
    assert page.status_code == 200 and "write ranges as low-high" in page.content.decode()
    page = hz_admin.post(
        "/admin/fares/legrule/add/",
        {
            "code": "x",
            "riders": "any",
            "kind": "percent",
            "value": "-5",
            "priority": "1",
            "categories": "pensioner",
        },
        HTTP_HOST=HZ,
    )
    assert "unknown: pensioner" in page.content.decode()
