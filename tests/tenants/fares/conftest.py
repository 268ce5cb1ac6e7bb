from __future__ import annotations

import datetime as dt

import pytest

from citycard.tenants.fares import selectors

SH = dt.timezone(dt.timedelta(hours=8))
EFFECTIVE = dt.datetime(2026, 1, 1, tzinfo=SH)


@pytest.fixture(autouse=True)
def _fresh_engines():
    selectors._engines.clear()
    yield
    selectors._engines.clear()


@pytest.fixture
def published(db, tenant):
    """Load a seed into a city and publish it: ``published('hangzhou', seeds.HANGZHOU)``."""
    from django_tenants.utils import tenant_context

    from citycard.tenants.fares import services

    def _publish(code: str, seed: dict, *, effective_from: dt.datetime = EFFECTIVE):
        city = tenant(code)
        with tenant_context(city):
            services.fares_document_load(tenant=city, document=seed, actor="test")
            return services.fares_publish(tenant=city, actor="test", effective_from=effective_from)

    return _publish
