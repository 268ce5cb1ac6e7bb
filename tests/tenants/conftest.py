from __future__ import annotations

import datetime as dt
import itertools

import pytest
from django_tenants.utils import tenant_context

from citycard.tenants.cards.pii import id_number_build

_seq = itertools.count(1)


def new_id(division: str = "330402", birth: dt.date = dt.date(1985, 3, 14)) -> str:
    """A fresh valid ID number (unique per call within the session)."""
    n = next(_seq)
    return id_number_build(division=division, birth_date=birth + dt.timedelta(days=n // 1000), sequence=n)


@pytest.fixture
def city(tenant):
    """Jiaxing's schema, with the standard card schemes, active for the test."""
    from citycard.tenants.cards.services import schemes_seed

    jiaxing = tenant("jiaxing")
    with tenant_context(jiaxing):
        schemes_seed(actor="test")
        yield jiaxing


@pytest.fixture
def holder(city):
    from citycard.tenants.cards.services import cardholder_register

    def _holder(**kwargs):
        kwargs.setdefault("name", "张三")
        kwargs.setdefault("id_number", new_id())
        kwargs.setdefault("local_hukou", True)
        return cardholder_register(actor="test", **kwargs)

    return _holder
