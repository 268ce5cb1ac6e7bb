"""Signed-in clients for the platform's site and tenants' sites (every page needs its own site's staff)."""

from __future__ import annotations

import pytest
from django.test import Client

from citycard.platform import services
from citycard.platform.models import Role, Tenant, TenantKind, User

PASSWORD = "a-long-test-password"


def site_staff(code: str | None):
    """A staff user of the site of tenant ``code`` (None: the platform), created on first use."""
    username = f"staff-{code or 'platform'}"
    user = User.objects.filter(username=username).first()
    if user is not None:
        return user
    if code is None:
        return services.user_create(username=username, role=Role.PLATFORM_OPERATOR, password=PASSWORD)
    kind = Tenant.objects.get(code=code).kind
    role = Role.CITY_ADMIN if kind == TenantKind.CITY else Role.COUNTY_OFFICER
    return services.user_create(username=username, role=role, tenant_code=code, password=PASSWORD)


@pytest.fixture
def staff_client(db):
    """``staff_client("hangzhou")``: a client signed in as staff of that tenant's site (None: the platform)."""

    def make(code: str | None) -> Client:
        client = Client()
        client.force_login(site_staff(code))
        return client

    return make
