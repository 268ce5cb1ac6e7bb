from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django_tenants.utils import tenant_context

from citycard.terminal_kit.signing import b64encode, public_key_bytes
from tests.tenants.conftest import new_id

AT = dt.datetime(2026, 11, 24, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))


@pytest.fixture
def hangzhou(tenant):
    """Hangzhou with its schemes, a park (文旅) and a library department, their service points, and the
    park's data grant for names (the library gets none)."""
    from citycard.tenants.cards.services import schemes_seed
    from citycard.tenants.departments import services as d

    hz = tenant("hangzhou")
    with tenant_context(hz):
        schemes_seed(actor="test")
        for department, name, point, point_name, address, hours in (
            ("hz-parks", "杭州市园文局", "west-lake-gate", "西湖景区北门", "北山街", "6:00-22:00"),
            (
                "hz-library",
                "杭州图书馆",
                "hz-library-desk",
                "杭州图书馆总服务台",
                "解放东路58号",
                "9:00-21:00",
            ),
        ):
            d.department_create(code=department, kind="culture_tourism", name=name, actor="t")
            d.service_point_create(
                department=department,
                code=point,
                name=point_name,
                address=address,
                hours=hours,
                services=["entry"],
                actor="t",
            )
        d.data_grant_create(
            department="hz-parks",
            fields=["name"],
            purpose="入园权益核验",
            valid_from=dt.date(2026, 1, 1),
            actor="t",
        )
        yield hz


@pytest.fixture
def person(hangzhou):
    """A Hangzhou cardholder with an active main card: (cardholder, card)."""
    from citycard.tenants.cards.services import card_issue_now, cardholder_register

    def make(birth=dt.date(1985, 3, 14), categories=(), name="王小明", **kwargs):
        holder = cardholder_register(
            name=name,
            id_number=new_id("330106", birth),
            local_hukou=True,
            categories=categories,
            actor="t",
            **kwargs,
        )
        card = card_issue_now(
            scheme_code="01", cardholder_id=holder.pk, actor="t", at=AT - dt.timedelta(days=30)
        )
        return holder, card

    return make


def park_pass(*, approve: bool = False, grant_to: int | None = None, **kw):
    """The park's pass (西湖公园年卡: department hz-parks, the west lake gate) as the city administrator
    defines it, at ``AT`` unless told; ``approve``: approved too, ``grant_to``: and granted to that
    cardholder. Run in Hangzhou's schema (the ``hangzhou`` fixture); returns the type."""
    from citycard.tenants.entitlements import services as s

    kw = {
        "code": "park-pass",
        "name": "西湖公园年卡",
        "department": "hz-parks",
        "service_points": ["west-lake-gate"],
        "role": "city_admin",
        "actor": "t",
        "at": AT,
        **kw,
    }
    kind = s.entitlement_type_create(**kw)
    if approve or grant_to is not None:
        s.entitlement_type_approve(code=kind.code, actor="city-admin", role="city_admin", at=kw["at"])
    if grant_to is not None:
        s.entitlement_grant(role="city_admin", type=kind.code, cardholder_id=grant_to, actor="t", at=kw["at"])
    return kind


def park_terminal(terminal_id: str, department: str = "hz-parks") -> Ed25519PrivateKey:
    """A park gate terminal (西湖景区, 北山街) of ``department`` registered in the schema in context, with a
    key of its own: the key, which signs the gate's uses and checks."""
    from citycard.tenants.terminals.services import terminal_register

    key = Ed25519PrivateKey.generate()
    terminal_register(
        terminal_id=terminal_id,
        operator="西湖景区",
        department=department,
        service="park",
        public_key=b64encode(public_key_bytes(key)),
        location="北山街",
        actor="t",
    )
    return key
