"""`citycard entitlements`: define, approve, grant, check and withdraw from the command line."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.utils import translation

from citycard.platform import services as platform

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = io.StringIO()
    with translation.override("zh-hans"):  # what a person reads, whatever language an earlier test left
        call_command("entitlements", *args, stdout=out)
    return out.getvalue()


def test_define_approve_grant_check_and_withdraw(person):
    holder, card = person()
    platform.user_create(
        username="hz-admin", role="city_admin", tenant_code="hangzhou", password="x", check_password=False
    )
    run(
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
        "--quota",
        "1",
        "--per",
        "day",
        "--as",
        "hz-admin",
    )
    assert "draft" in run("--tenant", "hangzhou", "types")
    run("--tenant", "hangzhou", "approve", "park-pass", "--as", "hz-admin")
    run("--tenant", "hangzhou", "grant", "park-pass", "--cardholder", str(holder.pk))
    assert "park-pass" in run("--tenant", "hangzhou", "show", "--card", card.card_no)
    answer = json.loads(
        run("--tenant", "hangzhou", "check", "--service-point", "west-lake-gate", "--card", card.card_no)
    )
    assert (answer["allowed"], answer["masked_name"]) == (True, "王**")
    assert "1 行" in run("--tenant", "hangzhou", "list-version")
    run("--tenant", "hangzhou", "withdraw", "park-pass", "--reason", "停用")
    assert "0 行" in run("--tenant", "hangzhou", "list-version")
    code = run("--tenant", "hangzhou", "code", "--card", card.card_no).strip()
    assert code.startswith("CC1.")
    answer = json.loads(
        run("--tenant", "hangzhou", "check", "--service-point", "west-lake-gate", "--code", code)
    )
    assert (answer["allowed"], answer["reason"]) == (False, "not_entitled")
