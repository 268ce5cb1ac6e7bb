"""The onboarding checklist (入驻清单) as a page and a command: each step, who did it and when, what is still
missing and where it is done; a county officer sees the county's, the city's administrators their
counties' too. Departments and service points made on the admin pages go through the audited services."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.utils import translation
from django_tenants.utils import tenant_context

from citycard.platform import services as platform
from citycard.platform.audit.models import AuditEntry
from citycard.platform.models import Role

pytestmark = pytest.mark.django_db
# In English: these tests read the checklist's wording (the pages' Chinese: tests/platform/test_languages.py).
HAIYAN = {"HTTP_HOST": "haiyan.localhost", "HTTP_ACCEPT_LANGUAGE": "en"}
JIAXING = {"HTTP_HOST": "jiaxing.localhost", "HTTP_ACCEPT_LANGUAGE": "en"}


def sign_in(client, tenant_code: str, role: str):
    user = platform.user_create(
        username=f"{tenant_code}-officer",
        role=role,
        tenant_code=tenant_code,
        password="pw-123456789",
        actor="t",
    )
    client.force_login(user)
    return client


def test_a_county_officer_onboards_through_the_pages_and_the_checklist_says_who_and_when(client, tenant):
    officer = sign_in(client, "haiyan", Role.COUNTY_OFFICER)
    page = officer.get("/admin/departments/onboarding/", **HAIYAN).content.decode()
    assert "0 of 5 steps done" not in page and "1 of 5 steps done" in page  # the keys come with the tenant
    assert "Still missing:" in page and "Departments onboarded" in page
    assert 'href="/admin/departments/department/add/"' in page
    assert "http://jiaxing.localhost/admin/cards/cardscheme/" in page  # the city publishes the schemes
    assert "citycard cards --tenant jiaxing schemes --publish" in page
    assert "/admin/departments/onboarding/" in officer.get("/admin/", **HAIYAN).content.decode()

    response = officer.post(
        "/admin/departments/department/add/",
        {"code": "hy-hrss", "kind": "hrss", "name": "海盐县人力社保局", "contact": "0573-1234"},
        **HAIYAN,
    )
    assert response.status_code == 302, response.content.decode()
    response = officer.post(
        "/admin/departments/servicepoint/add/",
        {
            "department": _department_pk(tenant("haiyan"), "hy-hrss"),
            "code": "hy-window",
            "name": "海盐市民卡窗口",
            "address": "海盐县武原街道",
            "hours": "周一至周五 8:30-17:00",
            "services": "apply,loss",
            "active": "on",
        },
        **HAIYAN,
    )
    assert response.status_code == 302, response.content.decode()
    with tenant_context(tenant("haiyan")):
        actions = list(AuditEntry.objects.order_by("seq").values_list("action", "actor"))
    assert ("department.create", "user:haiyan-officer") in actions
    assert ("service_point.create", "user:haiyan-officer") in actions
    page = officer.get("/admin/departments/onboarding/", **HAIYAN).content.decode()
    assert "3 of 5 steps done" in page and page.count("user:haiyan-officer") == 2
    # A change goes through its service too, with what it was.
    pk = _department_pk(tenant("haiyan"), "hy-hrss")
    response = officer.post(
        f"/admin/departments/department/{pk}/change/",
        {
            "kind": "hrss",
            "name": "海盐县人力资源和社会保障局",
            "contact": "0573-1234",
            "service_points-TOTAL_FORMS": "1",
            "service_points-INITIAL_FORMS": "1",
            "service_points-MIN_NUM_FORMS": "0",
            "service_points-MAX_NUM_FORMS": "1000",
            "service_points-0-id": _point_pk(tenant("haiyan"), "hy-window"),
            "service_points-0-department": pk,
        },
        **HAIYAN,
    )
    assert response.status_code == 302, response.content.decode()
    with tenant_context(tenant("haiyan")):
        update = AuditEntry.objects.get(action="department.update")
    assert '"name":"海盐县人力社保局"' in update.payload


def _point_pk(county, code: str) -> int:
    from citycard.tenants.departments.models import ServicePoint

    with tenant_context(county):
        return ServicePoint.objects.get(code=code).pk


def _department_pk(county, code: str) -> int:
    from citycard.tenants.departments.models import Department

    with tenant_context(county):
        return Department.objects.get(code=code).pk


def test_the_citys_administrator_sees_each_countys_checklist_with_links_to_the_countys_site(client, tenant):
    from citycard.tenants.departments.services import department_create, onboarding_publish

    with tenant_context(tenant("haiyan")):
        department_create(code="hy-trans", kind="transport", name="海盐县交通运输局", actor="user:hy-1")
    admin = sign_in(client, "jiaxing", Role.CITY_ADMIN)
    page = admin.get("/admin/departments/onboarding/", **JIAXING).content.decode()
    # The city reads what the county published, never the county's schema: nothing yet.
    assert 'id="haiyan"' in page and "has not published its checklist yet" in page and "user:hy-1" not in page
    with tenant_context(tenant("haiyan")):
        onboarding_publish(tenant=tenant("haiyan"), actor="user:hy-1")
        onboarding_publish(tenant=tenant("haiyan"), actor="user:hy-1")  # unchanged: no new version
    page = admin.get("/admin/departments/onboarding/", **JIAXING).content.decode()
    assert "As the county last published it" in page
    assert 'id="jiaxing"' in page and 'id="haiyan"' in page and 'id="tonglu"' not in page  # Hangzhou's county
    assert "http://haiyan.localhost/admin/departments/servicepoint/add/" in page
    assert "user:hy-1" in page and "on haiyan's site" in page and "1 department<" in page


@pytest.mark.usefixtures("english")
def test_the_command_shows_a_citys_counties_and_their_missing_steps(tenant):
    """In English throughout: the county publishes its checklist's labels in the language it speaks, and the
    city's command shows them as published."""
    from citycard.tenants.departments.services import department_create

    with tenant_context(tenant("haiyan")):
        department_create(code="hy-trans", kind="transport", name="海盐县交通运输局", actor="user:hy-1")
    out = io.StringIO()
    call_command("onboarding", "--tenant", "haiyan", stdout=out)  # the county's officer: published
    out = io.StringIO()
    with translation.override("en"):  # the command speaks CITYCARD_LANGUAGE (zh-hans by default)
        call_command("onboarding", "--tenant", "jiaxing", stdout=out)
    text = out.getvalue()
    assert "haiyan (County): 2 of 5 steps done" in text and "user:hy-1" in text
    assert "Service points open: haiyan.localhost/admin/departments/servicepoint/add/" in text
    out = io.StringIO()
    call_command("onboarding", "--tenant", "haiyan", "--json", stdout=out)
    [county] = json.loads(out.getvalue())
    steps = {s["key"]: s for s in county["steps"]}
    assert steps["departments"]["done"] and steps["departments"]["done_by"] == "user:hy-1"
    assert steps["departments"]["done_at"].endswith("+08:00")
    assert not steps["terminals"]["done"] and steps["terminals"]["command"].startswith(
        "citycard terminal --tenant haiyan"
    )
    assert steps["service_points"]["command"].startswith(
        "citycard departments --tenant haiyan service-point-add"
    )
    assert steps["card_schemes"]["admin_page"] == "jiaxing.localhost/admin/cards/cardscheme/"


def test_the_city_reads_only_a_signed_publication_of_its_countys_checklist(client, tenant):
    """A checklist document not signed by the county is refused, not shown."""
    from citycard.platform.models import Publication
    from citycard.tenants.departments.selectors import onboarding_overview
    from citycard.tenants.departments.services import onboarding_publish

    haiyan, jiaxing = tenant("haiyan"), tenant("jiaxing")
    with tenant_context(haiyan):
        onboarding_publish(tenant=haiyan, actor="t")
    publication = Publication.objects.filter(tenant=haiyan, kind="onboarding").latest("version")
    forged = json.loads(json.dumps(publication.document))
    forged["payload"]["steps"][0]["done"] = not forged["payload"]["steps"][0]["done"]
    Publication.objects.filter(pk=publication.pk).update(document=forged)
    with tenant_context(jiaxing):
        [_, county] = onboarding_overview(tenant=jiaxing)
    assert county.items == [] and "does not match" in county.problem
    page = sign_in(client, "jiaxing", Role.CITY_ADMIN).get("/admin/departments/onboarding/", **JIAXING)
    assert "does not verify, so it is not shown" in page.content.decode()
