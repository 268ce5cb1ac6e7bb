"""The tenant admin's credit pages: the city administrator sets the rules through the service, grants lines
to every eligible cardholder by action, suspends a line by action, and reads lines, items, bills and
repayments; another city's administrator sees none of Jiaxing's."""

from __future__ import annotations

import pytest
from django.test import Client
from django_tenants.utils import tenant_context

from citycard.platform.services import user_create
from citycard.tenants.credit.models import CreditLine, CreditRules

pytestmark = pytest.mark.django_db
JX = {"HTTP_HOST": "jiaxing.localhost"}


def test_the_admin_sets_rules_grants_and_suspends(city, insured_card, tenant):
    card = insured_card()
    client = Client()
    client.force_login(
        user_create(
            username="jx-admin-c", role="city_admin", tenant_code="jiaxing", password="a-long-password-1"
        )
    )
    form = {
        "enabled": "on",
        "require_insured": "on",
        "active_months": "6",
        "birth_decade_min": "1950",
        "birth_decade_max": "2000",
        "schemes": "",
        "limit_fen": "80000",
        "due_day": "20",
        "grace_days": "3",
        "minimum_bps": "1000",
    }
    response = client.post("/admin/credit/creditrules/add/", form, **JX)
    assert response.status_code == 302, response.content.decode()[:2000]
    with tenant_context(tenant("jiaxing")):
        rules = CreditRules.objects.get()
        assert rules.limit_fen == 80_000 and rules.updated_by == "user:jx-admin-c"
    client.post(
        "/admin/credit/creditrules/", {"action": "grant_eligible", "_selected_action": [rules.pk]}, **JX
    )
    with tenant_context(tenant("jiaxing")):
        line = CreditLine.objects.get(card_no=card)
        assert line.limit_fen == 80_000
    page = client.get("/admin/credit/creditline/", **JX).content.decode()
    assert card in page and "¥800.00" in page
    client.post(
        "/admin/credit/creditline/", {"action": "suspend_selected", "_selected_action": [line.pk]}, **JX
    )
    with tenant_context(tenant("jiaxing")):
        assert CreditLine.objects.get(pk=line.pk).state == "suspended"
    for model in ("credititem", "creditbill", "creditrepayment"):
        assert client.get(f"/admin/credit/{model}/", **JX).status_code == 200, model


def test_the_admin_reopens_a_closed_line_with_the_rules_checked_again(city, insured_card, tenant):
    from citycard.tenants.credit import services as credit

    credit.credit_rules_set(actor="t", limit_fen=40_000)
    card = insured_card()
    credit.credit_grant(card_no=card, actor="t")
    credit.credit_line_state_set(card_no=card, state="closed", reason="asked", actor="t")
    line = CreditLine.objects.get(card_no=card)
    client = Client()
    client.force_login(
        user_create(
            username="jx-admin-r", role="city_admin", tenant_code="jiaxing", password="a-long-password-1"
        )
    )
    client.post(
        "/admin/credit/creditline/", {"action": "reopen_selected", "_selected_action": [line.pk]}, **JX
    )
    with tenant_context(tenant("jiaxing")):
        reopened = CreditLine.objects.get(pk=line.pk)
        assert (reopened.state, reopened.limit_fen) == ("active", 40_000)
    # An active line is not reopened: the page says why, nothing changes.
    page = client.post(
        "/admin/credit/creditline/",
        {"action": "reopen_selected", "_selected_action": [line.pk]},
        follow=True,
        **JX,
    ).content.decode()
    assert card in page
    with tenant_context(tenant("jiaxing")):
        assert CreditLine.objects.get(pk=line.pk).state == "active"
