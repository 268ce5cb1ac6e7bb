"""The whole country on one deployment: `citycard tenant scale` and the pages that must not grow with it."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import translation
from django_tenants.utils import tenant_context

from citycard.platform import scale, services
from citycard.platform.models import Tenant, TenantKind
from citycard.tenants.cards.models import Card, Cardholder

pytestmark = pytest.mark.django_db

PLATFORM = {"HTTP_HOST": "localhost"}
# What the platform's staff open with every tenant of the country there: none may visit tenant schemas.
PAGES = ("/", "/status.json", "/admin/platform/tenant/", "/admin/platform/tenant/?kind=county", "/console/")


def _scale(*args: str) -> str:
    out = io.StringIO()
    # As `citycard` runs it: the platform's language active (a Django command with @no_translations run
    # earlier in the session may have left none active, which would read English).
    with translation.override("zh-hans"):
        call_command("tenant", "scale", "--country", *args, stdout=out)
    return out.getvalue()


def test_scale_builds_cities_before_their_counties_and_resumes():
    # The two most populous that are tenants: Shanghai (a session tenant) and Beijing (Chongqing is not yet).
    first = _scale("--limit", "4", "--cardholders-in-largest", "2", "--holders", "12")
    assert "已创建 4 个租户，0 个已存在；持卡人位于 d110000, shanghai" in first
    beijing = Tenant.objects.get(code="d110000")
    assert (beijing.kind, beijing.name_zh, beijing.province) == (TenantKind.CITY, "北京市", "北京")
    dongcheng = Tenant.objects.get(code="d110101")
    assert (dongcheng.kind, dongcheng.parent, dongcheng.name_zh) == (TenantKind.COUNTY, beijing, "东城区")
    with tenant_context(beijing):
        assert Cardholder.objects.count() == 12
        assert Card.objects.filter(state="active").count() == 12
    with tenant_context(dongcheng):
        assert not Cardholder.objects.exists()  # counties and small cities have no cardholders

    # Re-run with a larger limit: the four are skipped, two more made, Beijing's cardholders left alone.
    again = _scale("--limit", "6", "--cardholders-in-largest", "2", "--holders", "30")
    assert "已创建 2 个租户，4 个已存在" in again
    assert Tenant.objects.filter(code__startswith="d110").count() == 6
    with tenant_context(beijing):
        assert Cardholder.objects.count() == 12


def test_scale_keeps_a_division_that_already_has_a_tenant():
    # Beijing is a tenant under another code already: the country keeps it and builds its county under it.
    beijing = services.tenant_create(code="beijing", division_code="110000", actor="test")
    report = scale.country_build(limit=2, largest=0)
    assert (report.created, report.skipped) == (["d110101"], 1)
    assert Tenant.objects.get(code="d110101").parent == beijing
    assert not Tenant.objects.filter(code="d110000").exists()


def _queries(staff_client) -> dict[str, int]:
    """How many queries each page and `tenant list` costs, and the SQL of all of them."""
    client = staff_client(None)
    counts = {}
    for page in PAGES:
        with CaptureQueriesContext(connection) as captured:
            response = client.get(page, **PLATFORM)
        assert response.status_code == 200, page
        counts[page] = [q["sql"] for q in captured.captured_queries]
    for args in (("tenant", "list"), ("tenant", "list", "--json")):
        with CaptureQueriesContext(connection) as captured:
            call_command(*args, stdout=io.StringIO())
        counts[" ".join(args)] = [q["sql"] for q in captured.captured_queries]
    return counts


def test_pages_and_tenant_list_cost_the_same_with_5_or_50_tenants(staff_client):
    scale.country_build(limit=5, largest=0)
    staff_client(None)  # the staff user exists before counting
    few = _queries(staff_client)
    scale.country_build(limit=50, largest=0)
    many = _queries(staff_client)
    assert Tenant.objects.filter(code__regex=r"^d\d{6}$").count() == 50
    assert {page: len(sql) for page, sql in many.items()} == {page: len(sql) for page, sql in few.items()}
    for page, statements in many.items():
        # No statement names a tenant schema (d110101."...") or switches to one (only ever to public).
        switches = [
            s for s in statements if "search_path" in s.lower() and s.strip() != 'SET search_path = "public"'
        ]
        assert not [s for s in statements if '"d1' in s] + switches, page
    out = io.StringIO()
    call_command("tenant", "list", "--json", stdout=out)
    assert len([t for t in json.loads(out.getvalue()) if t["code"].startswith("d1")]) == 50
