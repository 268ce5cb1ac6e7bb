"""Who approves entitlement types (审批): a city's administrator approves its departments' types; a
department's officer defines its own department's and never approves, not even its own; a county's officer
approves its county's departments' types (and the county accepts the city's by defining the same code).
Each refusal is tested in the service, the admin and the command line; GraphQL (partner apps, by API key)
has no way to define or approve a type at all."""

from __future__ import annotations

import io

import pytest
from django.contrib.messages import get_messages
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils.translation import override
from django_tenants.utils import tenant_context

from citycard.graphql.api import tenant_schema
from citycard.platform import services as platform
from citycard.platform.errors import DomainError
from citycard.platform.models import Role
from citycard.tenants.entitlements import services as s
from citycard.tenants.entitlements.models import Entitlement, EntitlementType, TypeStatus
from tests.tenants.entitlements.conftest import AT

pytestmark = pytest.mark.django_db
HZ = {"HTTP_HOST": "hangzhou.localhost", "HTTP_ACCEPT_LANGUAGE": "en"}


def _user(username, role, tenant="hangzhou", department=""):
    return platform.user_create(
        username=username,
        role=role,
        tenant_code=tenant,
        department=department,
        password="x",
        check_password=False,
    )


def _define(role=Role.DEPARTMENT_OFFICER, role_department="hz-parks", department="hz-parks"):
    return s.entitlement_type_create(
        code="park-pass",
        name="西湖公园年卡",
        department=department,
        service_points=["west-lake-gate"] if department == "hz-parks" else [],
        role=role,
        role_department=role_department,
        actor="parks-officer",
        at=AT,
    )


def test_a_department_officer_defines_its_own_type_but_cannot_approve_it(hangzhou):
    _define()
    with pytest.raises(DomainError) as refused:
        s.entitlement_type_approve(code="park-pass", actor="parks-officer", role=Role.DEPARTMENT_OFFICER)
    assert (refused.value.code, refused.value.field) == ("not_allowed", "role")
    assert EntitlementType.objects.get(code="park-pass").status == TypeStatus.DRAFT
    for other in (Role.COUNTY_OFFICER, Role.PLATFORM_OPERATOR, "nobody"):
        with override("zh-hans"), pytest.raises(DomainError, match="审批"):
            s.entitlement_type_approve(code="park-pass", actor="x", role=other)
    kind = s.entitlement_type_approve(code="park-pass", actor="hz-admin", role=Role.CITY_ADMIN)
    assert kind.status == TypeStatus.APPROVED


def test_a_department_officer_cannot_define_another_departments_type(hangzhou):
    with pytest.raises(DomainError) as refused:
        _define(department="hz-library")
    assert refused.value.code == "not_allowed"
    with pytest.raises(DomainError):
        _define(role=Role.COUNTY_OFFICER, role_department="")  # a county's officer in a city
    assert not EntitlementType.objects.exists()
    _define(role=Role.CITY_ADMIN, role_department="", department="hz-library")  # the administrator may


def test_a_county_officer_approves_its_county_departments_types_and_a_city_admin_role_does_not(tenant):
    from citycard.tenants.departments import services as d

    with tenant_context(tenant("tonglu")):
        d.department_create(code="tl-library", kind="culture_tourism", name="桐庐县图书馆", actor="t")
        s.entitlement_type_create(
            code="library-borrow", name="借阅", department="tl-library", role=Role.COUNTY_OFFICER, actor="t"
        )
        with override("zh-hans"), pytest.raises(DomainError, match="审批"):
            s.entitlement_type_approve(code="library-borrow", actor="t", role=Role.CITY_ADMIN)
        with override("zh-hans"), pytest.raises(DomainError, match="审批"):
            s.entitlement_type_approve(code="library-borrow", actor="t", role=Role.DEPARTMENT_OFFICER)
        assert s.entitlement_type_approve(
            code="library-borrow", actor="t", role=Role.COUNTY_OFFICER
        ).status == (TypeStatus.APPROVED)


def test_admin_a_department_officer_has_no_approve_action_and_a_forced_one_is_refused(client, hangzhou):
    _define()
    officer = _user("parks-officer", Role.DEPARTMENT_OFFICER, department="hz-parks")
    client.force_login(officer)
    page = client.get("/admin/entitlements/entitlementtype/", **HZ)
    assert page.status_code == 200 and "approve_selected" not in page.content.decode()
    kind = EntitlementType.objects.get(code="park-pass")
    response = client.post(
        "/admin/entitlements/entitlementtype/",
        {"action": "approve_selected", "_selected_action": [kind.pk]},
        **HZ,
    )
    assert response.status_code in (200, 302)
    with tenant_context(hangzhou):
        assert EntitlementType.objects.get(code="park-pass").status == TypeStatus.DRAFT
    admin = _user("hz-admin", Role.CITY_ADMIN)
    client.force_login(admin)
    client.post(
        "/admin/entitlements/entitlementtype/",
        {"action": "approve_selected", "_selected_action": [kind.pk]},
        **HZ,
    )
    with tenant_context(hangzhou):
        assert EntitlementType.objects.get(code="park-pass").status == TypeStatus.APPROVED


def test_admin_a_department_officer_defining_another_departments_type_gets_a_message(client, hangzhou):
    with tenant_context(hangzhou):
        library = EntitlementType._meta.get_field("department").related_model.objects.get(code="hz-library")
    client.force_login(_user("parks-officer", Role.DEPARTMENT_OFFICER, department="hz-parks"))
    form = {
        "code": "library-borrow",
        "name": "借阅",
        "department": library.pk,
        "quota_period": "none",
        "price_fen": "0",
    }
    response = client.post("/admin/entitlements/entitlementtype/add/", form, **HZ)
    assert response.status_code == 302
    [message] = [str(m) for m in get_messages(response.wsgi_request)]
    assert "own department" in message
    with tenant_context(hangzhou):
        assert not EntitlementType.objects.exists()


def test_cli_approve_as_a_department_officer_is_refused(hangzhou):
    _user("parks-officer", Role.DEPARTMENT_OFFICER, department="hz-parks")
    out = io.StringIO()
    call_command(
        "entitlements",
        "--tenant",
        "hangzhou",
        "type-create",
        "park-pass",
        "--name",
        "西湖公园年卡",
        "--department",
        "hz-parks",
        "--service-points",
        "west-lake-gate",
        "--as",
        "parks-officer",
        stdout=out,
    )
    with override("zh-hans"), pytest.raises((DomainError, CommandError), match="审批"):
        call_command("entitlements", "--tenant", "hangzhou", "approve", "park-pass", "--as", "parks-officer")
    with pytest.raises((DomainError, CommandError)):
        call_command("entitlements", "--tenant", "hangzhou", "approve", "park-pass", "--as", "jx-nobody")
    with tenant_context(hangzhou):
        assert EntitlementType.objects.get(code="park-pass").status == TypeStatus.DRAFT


def test_graphql_offers_no_way_to_define_or_approve_a_type():
    mutations = tenant_schema.graphql_schema.mutation_type.fields
    assert not [name for name in mutations if "Type" in name and "ntitlement" in name]


def test_admin_a_department_officer_grants_only_its_own_departments_types(client, hangzhou, person):
    holder, _card = person()
    _define(role=Role.CITY_ADMIN, role_department="", department="hz-library")
    s.entitlement_type_approve(code="park-pass", actor="hz-admin", role=Role.CITY_ADMIN)
    library = EntitlementType.objects.get(code="park-pass")
    client.force_login(_user("parks-officer", Role.DEPARTMENT_OFFICER, department="hz-parks"))
    form = {"type": library.pk, "cardholder_id": holder.pk, "valid_from": "2026-11-24", "valid_to": ""}
    response = client.post("/admin/entitlements/entitlement/add/", form, **HZ)
    assert response.status_code == 200  # the library's type is not a choice for the parks officer
    with tenant_context(hangzhou):
        assert not Entitlement.objects.exists()
