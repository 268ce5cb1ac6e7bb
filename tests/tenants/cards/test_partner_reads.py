"""Selectors and services behind the partner API: verification through the blind index, lookups by ID
number, categories on a day, and a loss report a retry cannot repeat."""

from __future__ import annotations

import datetime as dt

import pytest

from citycard.platform.errors import DomainError
from citycard.tenants.cards import selectors, services
from citycard.tenants.cards.models import HotlistEntry

from .conftest import new_id

pytestmark = pytest.mark.django_db
AT = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def test_verify_and_lookup_by_id_number(holder):
    id_number = new_id()
    person = holder(
        id_number=id_number,
        categories=[{"code": "student", "valid_from": dt.date(2025, 9, 1), "valid_to": dt.date(2026, 6, 30)}],
    )
    card = services.card_issue_now(scheme_code="01", cardholder_id=person.pk, actor="t", at=AT)
    anonymous = services.card_issue_now(scheme_code="03", cardholder_id=None, actor="t", at=AT)
    assert selectors.cardholder_verify(card_no=card.card_no, id_number=id_number) is True
    assert selectors.cardholder_verify(card_no=card.card_no, id_number=new_id()) is False
    assert selectors.cardholder_verify(card_no=anonymous.card_no, id_number=id_number) is False
    assert selectors.cardholder_verify(card_no="0" * 19, id_number=id_number) is False
    with pytest.raises(DomainError) as bad:
        selectors.cardholder_verify(card_no=card.card_no, id_number="12345")
    assert bad.value.field == "id_number"
    assert selectors.cardholder_by_id_number(id_number=id_number).pk == person.pk
    assert selectors.cardholder_by_id_number(id_number=new_id()) is None
    rows = selectors.cardholder_categories(cardholder_id=person.pk)
    assert selectors.categories_on(rows, on=dt.date(2026, 3, 2)) == {"student"}
    assert selectors.categories_on(rows, on=dt.date(2026, 7, 1)) == frozenset()


def test_loss_report_once_per_actor(holder):
    card = services.card_issue_now(scheme_code="01", cardholder_id=holder().pk, actor="t", at=AT)
    frozen, reported = services.card_report_lost_once(card_no=card.card_no, actor="apikey:a", at=AT)
    assert (frozen.state, reported) == ("frozen", True)
    later = AT + dt.timedelta(hours=1)
    again, reported = services.card_report_lost_once(card_no=card.card_no, actor="apikey:a", at=later)
    assert (again.state, again.frozen_at, reported) == ("frozen", AT, False)
    assert HotlistEntry.objects.filter(card_no=card.card_no).count() == 1
    with pytest.raises(DomainError) as other:
        services.card_report_lost_once(card_no=card.card_no, actor="apikey:b", at=later)
    assert other.value.code == "invalid_state"
