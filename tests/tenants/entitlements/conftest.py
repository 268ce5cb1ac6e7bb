from __future__ import annotations

import datetime as dt

import pytest
from django_tenants.utils import tenant_context

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
        d.department_create(code="hz-parks", kind="culture_tourism", name="杭州市园文局", actor="t")
        d.department_create(code="hz-library", kind="culture_tourism", name="杭州图书馆", actor="t")
        d.service_point_create(
            department="hz-parks",
            code="west-lake-gate",
            name="西湖景区北门",
            address="北山街",
            hours="6:00-22:00",
            services=["entry"],
            actor="t",
        )
        d.service_point_create(
            department="hz-library",
            code="hz-library-desk",
            name="杭州图书馆总服务台",
            address="解放东路58号",
            hours="9:00-21:00",
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
