"""Who sees what in the admin: each role on the platform domain and on tenant domains."""

from __future__ import annotations

import pytest

from citycard.platform import services
from citycard.platform.models import Role
from citycard.platform.roles import role_allows

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-test-password"


@pytest.fixture
def users(db):
    make = services.user_create
    return {
        "operator": make(username="op", role=Role.PLATFORM_OPERATOR, password=PASSWORD),
        "clearing": make(username="clr", role=Role.CLEARING_STAFF, password=PASSWORD),
        "hz_admin": make(username="hz", role=Role.CITY_ADMIN, tenant_code="hangzhou", password=PASSWORD),
        "tl_officer": make(username="tl", role=Role.COUNTY_OFFICER, tenant_code="tonglu", password=PASSWORD),
    }


def _admin_index(client, user, host):
    client.force_login(user)
    response = client.get("/admin/", HTTP_HOST=host)
    client.logout()
    return response


def test_platform_operator_sees_tenants_and_users(client, users):
    page = _admin_index(client, users["operator"], "localhost")
    assert page.status_code == 200
    html = page.content.decode()
    assert "/admin/platform/tenant/" in html and "/admin/platform/user/" in html
    assert client.get("/admin/", HTTP_HOST="localhost").status_code == 302  # logged out again


def test_clearing_staff_sees_tenants_but_not_users(client, users):
    client.force_login(users["clearing"])
    html = client.get("/admin/", HTTP_HOST="localhost").content.decode()
    assert "/admin/platform/tenant/" in html
    assert "/admin/platform/user/" not in html
    assert client.get("/admin/platform/user/", HTTP_HOST="localhost").status_code == 403
    assert client.get("/admin/platform/tenant/add/", HTTP_HOST="localhost").status_code == 403


def test_platform_users_cannot_use_tenant_admins(client, users):
    assert _admin_index(client, users["operator"], "hangzhou.localhost").status_code == 302


def test_city_admin_only_on_own_domain(client, users):
    page = _admin_index(client, users["hz_admin"], "hangzhou.localhost")
    assert page.status_code == 200
    assert "/admin/platform/user/" in page.content.decode()
    assert _admin_index(client, users["hz_admin"], "jiaxing.localhost").status_code == 302
    assert _admin_index(client, users["hz_admin"], "tonglu.localhost").status_code == 302
    assert _admin_index(client, users["hz_admin"], "localhost").status_code == 302


def test_city_admin_sees_only_own_tenants_users(client, users):
    services.user_create(username="jx", role=Role.CITY_ADMIN, tenant_code="jiaxing", password=PASSWORD)
    client.force_login(users["hz_admin"])
    html = client.get("/admin/platform/user/", HTTP_HOST="hangzhou.localhost").content.decode()
    assert ">hz<" in html
    assert ">jx<" not in html and ">tl<" not in html and ">op<" not in html


def test_county_officer_cannot_manage_users_or_reach_the_city(client, users):
    page = _admin_index(client, users["tl_officer"], "tonglu.localhost")
    assert page.status_code == 200
    html = page.content.decode()
    assert "/admin/audit/auditentry/" in html
    assert "/admin/platform/user/" not in html
    assert _admin_index(client, users["tl_officer"], "hangzhou.localhost").status_code == 302


def test_suspended_tenant_users_cannot_sign_in(client, users):
    services.tenant_suspend(code="hangzhou", reason="audit")
    assert _admin_index(client, users["hz_admin"], "hangzhou.localhost").status_code == 403


def test_role_policy():
    assert role_allows(Role.PLATFORM_OPERATOR, "platform.add_tenant")
    assert not role_allows(Role.CLEARING_STAFF, "platform.add_tenant")
    assert not role_allows(Role.COUNTY_OFFICER, "platform.view_user")
    assert not role_allows(Role.CITY_ADMIN, "platform.change_tenant")


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"role": Role.CITY_ADMIN, "tenant_code": "tonglu"}, "tenant_kind_mismatch"),
        ({"role": Role.COUNTY_OFFICER, "tenant_code": "hangzhou"}, "tenant_kind_mismatch"),
        ({"role": Role.CITY_ADMIN}, "tenant_required"),
        ({"role": Role.CLEARING_STAFF, "tenant_code": "hangzhou"}, "tenant_not_allowed"),
        ({"role": "janitor"}, "role_unknown"),
    ],
)
def test_user_role_and_tenant_must_match(kwargs, code):
    from citycard.platform.errors import DomainError

    with pytest.raises(DomainError) as err:
        services.user_create(username="x", password=PASSWORD, **kwargs)
    assert err.value.code == code


def test_platform_operator_creates_a_tenant_through_the_admin(client, users):
    client.force_login(users["operator"])
    response = client.post(
        "/admin/platform/tenant/add/",
        {"code": "changzhou", "division_code": "320400", "parent_code": "", "name_zh": "", "name_en": ""},
        HTTP_HOST="localhost",
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    from citycard.platform.models import Tenant

    assert Tenant.objects.get(code="changzhou").name_en == "Changzhou"
    bad = client.post(
        "/admin/platform/tenant/add/",
        {"code": "haining", "division_code": "330481", "parent_code": "hangzhou"},
        HTTP_HOST="localhost",
    )
    assert bad.status_code == 200
    assert "330400" in bad.content.decode()
    assert not Tenant.objects.filter(code="haining").exists()
