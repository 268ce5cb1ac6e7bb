"""The city admin: rules listed, the simulator quotes with the trace, publishing from the admin."""

from __future__ import annotations

import pytest
from django_tenants.utils import tenant_context

from citycard.platform import services as platform_services
from citycard.platform.models import Role
from citycard.tenants.fares import seeds
from citycard.tenants.fares.models import Cap, FareProduct, LegRule, Quota, RouteSet, Timeframe

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
    assert "票价 100 分（基础 200 分）" in html and "hz-elderly-peak" in html and "hangzhou 规则 v1" in html
    error = hz_admin.get(
        "/admin/fares/legrule/simulator/",
        {"service": "ferry", "route": "1", "at": "2026-11-23 08:10", "scheme": "01"},
        HTTP_HOST=HZ,
    )
    assert "no fare product for ferry route 1" in error.content.decode()


def test_publish_from_the_admin(hz_admin, tenant):
    with tenant_context(tenant("hangzhou")):
        LegRule.objects.filter(code="hz-card-91").update(value=8500)
    assert "规则有效" in hz_admin.get("/admin/fares/legrule/publish/", HTTP_HOST=HZ).content.decode()
    response = hz_admin.post("/admin/fares/legrule/publish/", HTTP_HOST=HZ)
    assert response.status_code == 302
    assert tenant("hangzhou").publications.filter(kind="fare_rules").count() == 2


def test_admin_forms_refuse_bad_rows_at_once(hz_admin):
    page = hz_admin.post(
        "/admin/fares/routeset/add/", {"code": "night", "service": "bus", "ranges": "499-1"}, HTTP_HOST=HZ
    )
    assert page.status_code == 200 and "范围请写成 低-高" in page.content.decode()  # write ranges as low-high
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
    assert "未知：pensioner" in page.content.decode()  # unknown: pensioner


# --- editing goes through the services -------------------------------------------------------------


def _audit(tenant, action):
    from citycard.platform.audit.models import AuditEntry

    with tenant_context(tenant):
        return list(AuditEntry.objects.filter(action=action).values_list("actor", "object_id"))


def _rows(tenant, model, **lookup):
    with tenant_context(tenant):
        return list(model.objects.filter(**lookup))


def test_admin_adds_changes_and_deletes_through_the_services(hz_admin, tenant):
    hz = tenant("hangzhou")
    page = hz_admin.post(
        "/admin/fares/routeset/add/",
        {"code": "night", "service": "bus", "ranges": "300-399", "routes": "", "excluded": "315"},
        HTTP_HOST=HZ,
    )
    assert page.status_code == 302, page.content.decode()[:2000]
    (night,) = _rows(hz, RouteSet, code="night")
    assert night.excluded == ["315"]
    assert _audit(hz, "fares.route_set.create") == [("user:hzfares", "night")]

    (rule,) = _rows(hz, LegRule, code="hz-card-91")
    form = {
        "code": rule.code,
        "name": rule.name,
        "service": rule.service,
        "route_set": night.pk,
        "timeframe": "",
        "categories": ",".join(rule.categories),
        "media": ",".join(rule.media),
        "passes": ",".join(rule.passes),
        "riders": rule.riders,
        "kind": rule.kind,
        "value": "8500",
        "priority": str(rule.priority),
        "valid_from": "",
        "valid_to": "",
        "quota": "",
    }
    page = hz_admin.post(f"/admin/fares/legrule/{rule.pk}/change/", form, HTTP_HOST=HZ)
    assert page.status_code == 302, page.content.decode()[:2000]
    (rule,) = _rows(hz, LegRule, code="hz-card-91")
    assert (rule.value, rule.route_set_id) == (8500, night.pk)
    assert _audit(hz, "fares.leg_rule.change") == [("user:hzfares", "hz-card-91")]

    (cap,) = _rows(hz, Cap)[:1]
    page = hz_admin.post(f"/admin/fares/cap/{cap.pk}/delete/", {"post": "yes"}, HTTP_HOST=HZ)
    assert page.status_code == 302 and not _rows(hz, Cap, pk=cap.pk)
    assert _audit(hz, "fares.cap.delete") == [("user:hzfares", cap.code)]

    quotas = _rows(hz, Quota)
    with tenant_context(hz):
        LegRule.objects.update(quota=None)
    page = hz_admin.post(
        "/admin/fares/quota/",
        {"action": "delete_selected", "_selected_action": [q.pk for q in quotas], "post": "yes"},
        HTTP_HOST=HZ,
    )
    assert page.status_code == 302 and not _rows(hz, Quota)
    assert sorted(_audit(hz, "fares.quota.delete")) == sorted(("user:hzfares", q.code) for q in quotas)


def test_admin_timeframe_saved_with_its_windows(hz_admin, tenant):
    hz = tenant("hangzhou")
    management = {
        "windows-TOTAL_FORMS": "1",
        "windows-INITIAL_FORMS": "0",
        "windows-MIN_NUM_FORMS": "0",
        "windows-MAX_NUM_FORMS": "1000",
    }
    window = {"windows-0-days": "1,2,3,4,5", "windows-0-start": "17:00", "windows-0-end": "19:00"}
    page = hz_admin.post(
        "/admin/fares/timeframe/add/", {"code": "evening", **management, **window}, HTTP_HOST=HZ
    )
    assert page.status_code == 302, page.content.decode()[:3000]
    (evening,) = _rows(hz, Timeframe, code="evening")
    with tenant_context(hz):
        windows = [(w.days, w.start, w.end) for w in evening.windows.all()]
        (window_row,) = evening.windows.all()
    assert windows == [([1, 2, 3, 4, 5], "17:00", "19:00")]
    assert _audit(hz, "fares.timeframe.create") == [("user:hzfares", "evening")]
    page = hz_admin.post(
        f"/admin/fares/timeframe/{evening.pk}/change/",
        {
            "code": "evening",
            "name": "evening peak",
            **management,
            "windows-TOTAL_FORMS": "1",
            "windows-INITIAL_FORMS": "1",
            "windows-0-id": str(window_row.pk),
            "windows-0-timeframe": str(evening.pk),
            "windows-0-days": "6,7",
            "windows-0-start": "17:00",
            "windows-0-end": "20:00",
        },
        HTTP_HOST=HZ,
    )
    assert page.status_code == 302, page.content.decode()[:3000]
    with tenant_context(hz):
        assert [(w.days, w.end) for w in Timeframe.objects.get(code="evening").windows.all()] == [
            ([6, 7], "20:00")
        ]
    bad = {"code": "late", **management, **window, "windows-0-start": "23:00"}
    page = hz_admin.post("/admin/fares/timeframe/add/", bad, HTTP_HOST=HZ)
    assert page.status_code == 200 and "开始早于结束" in page.content.decode()  # start before end
    assert not _rows(hz, Timeframe, code="late")


def test_admin_shows_a_service_refusal_as_a_message_with_nothing_written(hz_admin, tenant, monkeypatch):
    from citycard.platform.errors import DomainError
    from citycard.tenants.fares import admin as fares_admin

    hz = tenant("hangzhou")
    (product,) = _rows(hz, FareProduct, route_set__isnull=False)[:1]

    def refuse(**kwargs):
        raise DomainError("fare product refused: amount_fen: not today", field="amount_fen")

    monkeypatch.setattr(fares_admin.FareProductAdmin, "change_service", staticmethod(refuse))
    form = {
        "code": product.code,
        "name": product.name,
        "service": product.service,
        "route_set": product.route_set_id or "",
        "amount_fen": "999",
        "priority": str(product.priority),
        "valid_from": "",
        "valid_to": "",
    }
    page = hz_admin.post(f"/admin/fares/fareproduct/{product.pk}/change/", form, HTTP_HOST=HZ, follow=True)
    assert page.status_code == 200 and "not today" in page.content.decode()
    (product_after,) = _rows(hz, FareProduct, pk=product.pk)
    assert product_after.amount_fen == product.amount_fen
    from django.contrib.admin.models import LogEntry

    with tenant_context(hz):
        assert not LogEntry.objects.filter(object_id=str(product.pk)).exists()

    (route_set,) = _rows(hz, RouteSet, pk=product.route_set_id)
    page = hz_admin.post(f"/admin/fares/routeset/{route_set.pk}/delete/", {"post": "yes"}, HTTP_HOST=HZ)
    assert page.status_code == 200 and _rows(hz, RouteSet, pk=route_set.pk)  # in use: Django's own refusal

    caps = _rows(hz, Cap)
    monkeypatch.setattr(fares_admin.CapAdmin, "delete_service", staticmethod(refuse))
    page = hz_admin.post(
        "/admin/fares/cap/",
        {"action": "delete_selected", "_selected_action": [c.pk for c in caps], "post": "yes"},
        HTTP_HOST=HZ,
        follow=True,
    )
    assert page.status_code == 200 and "not today" in page.content.decode()
    assert len(_rows(hz, Cap)) == len(caps) > 0


def test_county_officer_sees_the_rules_pages_but_cannot_edit(client, tenant):
    officer = platform_services.user_create(
        username="tlfares", role=Role.COUNTY_OFFICER, tenant_code="tonglu", password="a-long-test-password"
    )
    client.force_login(officer)
    tl = "tonglu.localhost"
    assert client.get("/admin/fares/routeset/", HTTP_HOST=tl).status_code == 200
    page = client.post(
        "/admin/fares/routeset/add/", {"code": "x", "service": "bus", "routes": "1"}, HTTP_HOST=tl
    )
    assert page.status_code == 403
    assert not _rows(tenant("tonglu"), RouteSet) and not _audit(tenant("tonglu"), "fares.route_set.create")


def test_admin_changes_a_visitor_policy_named_by_scope_and_key(hz_admin, tenant):
    from citycard.tenants.fares.models import VisitorPolicy

    hz = tenant("hangzhou")
    (default,) = _rows(hz, VisitorPolicy, scope="default")
    page = hz_admin.post(
        f"/admin/fares/visitorpolicy/{default.pk}/change/",
        {"scope": "network", "key": "gba", "policy": "no_concession"},
        HTTP_HOST=HZ,
    )
    assert page.status_code == 302, page.content.decode()[:2000]
    (moved,) = _rows(hz, VisitorPolicy, pk=default.pk)
    assert (moved.scope, moved.key, moved.policy) == ("network", "gba", "no_concession")
    assert _audit(hz, "fares.visitor_policy.change") == [("user:hzfares", "network:gba -> no_concession")]
    page = hz_admin.post(
        "/admin/fares/visitorpolicy/add/",
        {"scope": "tenant", "key": "hz", "policy": "host_rules"},
        HTTP_HOST=HZ,
    )
    assert page.status_code == 200 and "6 位行政区划代码" in page.content.decode()  # 6-digit division code
