"""`citycard entitlements`: define, approve, grant, check and withdraw from the command line."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command
from django.utils import translation
from django_tenants.utils import tenant_context

from citycard.platform import services as platform
from citycard.platform.audit.models import AuditEntry
from citycard.tenants.entitlements.models import Entitlement
from tests.tenants.entitlements.conftest import park_pass

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
    run("--tenant", "hangzhou", "grant", "park-pass", "--cardholder", str(holder.pk), "--as", "hz-admin")
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


def test_grant_batch_and_revoke_on_the_command_line_act_as_a_user_whose_role_decides(
    person, hangzhou, tmp_path
):
    """谁主管谁负责: only the type's own department's officer or the city's administrator grants or revokes it;
    another department's officer is refused in Chinese with nothing written; the audit names the user."""
    holder, _card = person()
    other, _other_card = person()
    for username, role, department in (
        ("hz-admin", "city_admin", ""),
        ("hz-parks-officer", "department_officer", "hz-parks"),
        ("hz-library-officer", "department_officer", "hz-library"),
    ):
        platform.user_create(
            username=username,
            role=role,
            tenant_code="hangzhou",
            department=department,
            password="x",
            check_password=False,
        )
    with tenant_context(hangzhou):
        park_pass(approve=True, at=None)
    grant = ("--tenant", "hangzhou", "grant", "park-pass", "--cardholder", str(holder.pk), "--as")
    with pytest.raises(CommandError, match="无权授予或撤销部门 hz-parks 的权益") as refused:
        run(*grant, "hz-library-officer")
    assert refused.value.returncode == 2 and refused.value.__cause__.code == "not_allowed"
    with tenant_context(hangzhou):
        assert not Entitlement.objects.exists()
        assert not AuditEntry.objects.filter(action="entitlement.grant").exists()
    run(*grant, "hz-parks-officer")
    with tenant_context(hangzhou):
        given = Entitlement.objects.get(cardholder_id=holder.pk)
        entry = AuditEntry.objects.get(action="entitlement.grant")
        assert (given.granted_by, entry.actor) == ("user:hz-parks-officer", "user:hz-parks-officer")
        assert json.loads(entry.payload)["role"] == "department_officer"
    with pytest.raises(CommandError, match="无权授予或撤销"):
        run("--tenant", "hangzhou", "revoke", str(given.pk), "--reason", "x", "--as", "hz-library-officer")
    run("--tenant", "hangzhou", "revoke", str(given.pk), "--reason", "迁出", "--as", "hz-admin")
    path = tmp_path / "ids.txt"
    path.write_text(f"{other.pk}\n")
    with pytest.raises(CommandError, match="无权授予或撤销"):
        run("--tenant", "hangzhou", "grant-batch", "park-pass", str(path), "--as", "hz-library-officer")
    assert "granted: 1" in run(
        "--tenant", "hangzhou", "grant-batch", "park-pass", str(path), "--as", "hz-parks-officer"
    )
    with tenant_context(hangzhou):
        assert Entitlement.objects.get(cardholder_id=other.pk).granted_by == "user:hz-parks-officer"
        assert Entitlement.objects.get(cardholder_id=holder.pk).revoked_by == "user:hz-admin"
