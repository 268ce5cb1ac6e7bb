"""The entitlement pages of a city's admin site save through the services; a refusal comes back to the page
as one message, with nothing written, never a server error."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django_tenants.utils import tenant_context

from citycard.platform import services as platform
from citycard.platform.models import Role
from citycard.tenants.entitlements import services as s
from citycard.tenants.entitlements.models import Entitlement, EntitlementType
from tests.tenants.entitlements.conftest import AT, park_pass

pytestmark = pytest.mark.django_db
HZ = {"HTTP_HOST": "hangzhou.localhost", "HTTP_ACCEPT_LANGUAGE": "en"}


def _admin(client):
    user = platform.user_create(
        username="hz-admin", role=Role.CITY_ADMIN, tenant_code="hangzhou", password="pw-123456789", actor="t"
    )
    client.force_login(user)
    return client


def test_a_grant_the_service_refuses_is_a_message_on_the_form_and_nothing_is_written(
    client, hangzhou, person
):
    holder, _card = person()
    kind = park_pass()  # not approved yet: the service refuses grants of it
    admin = _admin(client)
    form = {"type": kind.pk, "cardholder_id": holder.pk, "valid_from": "2026-11-24", "valid_to": ""}

    response = admin.post("/admin/entitlements/entitlement/add/", form, **HZ)

    assert response.status_code == 302 and response.url == "/admin/entitlements/entitlement/add/"
    [message] = [str(m) for m in get_messages(response.wsgi_request)]
    assert "park-pass" in message and "approved" in message
    with tenant_context(hangzhou):
        assert not Entitlement.objects.exists()
        s.entitlement_type_approve(code="park-pass", actor="city-admin", role="city_admin", at=AT)
    response = admin.post("/admin/entitlements/entitlement/add/", form, **HZ)
    assert response.status_code == 302 and response.url == "/admin/entitlements/entitlement/"
    with tenant_context(hangzhou):
        assert Entitlement.objects.filter(cardholder_id=holder.pk, type__code="park-pass").count() == 1


def test_a_type_with_a_code_taken_is_refused_on_the_form(client, hangzhou):
    s.entitlement_type_create(
        role="city_admin", code="library-borrow", name="借阅", department="hz-library", actor="t", at=AT
    )
    admin = _admin(client)
    with tenant_context(hangzhou):
        department = EntitlementType.objects.get(code="library-borrow").department_id
    form = {
        "code": "library-borrow",
        "name": "借阅（重复）",
        "department": department,
        "quota_period": "none",
        "price_fen": "0",
    }

    response = admin.post("/admin/entitlements/entitlementtype/add/", form, **HZ)

    assert response.status_code in (200, 302)  # the form's own check or the service's: never a 500
    with tenant_context(hangzhou):
        assert EntitlementType.objects.filter(code="library-borrow").count() == 1
