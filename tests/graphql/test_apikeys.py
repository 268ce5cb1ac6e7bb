"""API keys: issued hashed with scopes and expiry, shown once, revoked; the CLI; audit entries."""

from __future__ import annotations

import datetime as dt
import hashlib
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django_tenants.utils import tenant_context

from citycard.platform import services
from citycard.platform.audit.models import AuditEntry
from citycard.platform.errors import DomainError, NotFound
from citycard.platform.models import ApiKey

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def test_issue_stores_only_the_hash_and_last4(tenant):
    key, token = services.api_key_issue(
        tenant_code="hangzhou",
        name="浙大一院 app",
        scopes=["cards:read", "transactions:read"],
        actor="test",
        now=NOW,
    )
    assert token.startswith(f"cck_{key.key_id}_") and len(token) > 40
    stored = ApiKey.objects.get(pk=key.pk)
    assert stored.token_sha256 == hashlib.sha256(token.encode()).hexdigest()
    assert stored.last4 == token[-4:]
    assert token not in str(stored.__dict__)
    assert stored.scopes == ["cards:read", "transactions:read"]
    assert stored.expires_at == NOW + dt.timedelta(days=365)
    assert services.api_key_parse(token) == key.key_id
    assert AuditEntry.objects.filter(action="apikey.issue", object_id=key.key_id).count() == 1
    with tenant_context(tenant("hangzhou")):
        assert AuditEntry.objects.filter(action="apikey.issue", object_id=key.key_id).count() == 1


@pytest.mark.parametrize(
    ("kwargs", "code", "field"),
    [
        ({"scopes": []}, "scopes_required", "scopes"),
        ({"scopes": ["cards:read", "cards:delete"]}, "scope_unknown", "scopes"),
        ({"name": "  "}, "name_required", "name"),
        ({"expires_at": NOW - dt.timedelta(seconds=1)}, "expiry_past", "expires_at"),
        ({"expires_at": NOW + dt.timedelta(days=3 * 365 + 1)}, "expiry_too_far", "expires_at"),
        ({"expires_at": dt.datetime(2026, 6, 1)}, "expiry_naive", "expires_at"),
        ({"tenant_code": "public"}, "scope_unknown", "scopes"),  # a platform key has platform scopes
    ],
)
def test_issue_refusals_name_the_problem(kwargs, code, field):
    args = {"tenant_code": "hangzhou", "name": "app", "scopes": ["cards:read"], "now": NOW, **kwargs}
    before = ApiKey.objects.count()
    with pytest.raises(DomainError) as exc:
        services.api_key_issue(**args)
    assert (exc.value.code, exc.value.field) == (code, field)
    assert ApiKey.objects.count() == before


def test_unknown_tenant_is_not_found():
    with pytest.raises(NotFound):
        services.api_key_issue(tenant_code="atlantis", name="app", scopes=["cards:read"])


def test_revoke_needs_a_reason_the_right_tenant_and_happens_once():
    key, _ = services.api_key_issue(tenant_code="hangzhou", name="app", scopes=["cards:read"])
    with pytest.raises(DomainError) as exc:
        services.api_key_revoke(tenant_code="hangzhou", key_id=key.key_id, reason=" ")
    assert exc.value.code == "reason_required"
    with pytest.raises(NotFound):
        services.api_key_revoke(tenant_code="jiaxing", key_id=key.key_id, reason="leaked")
    revoked = services.api_key_revoke(
        tenant_code="hangzhou", key_id=key.key_id, reason="leaked", actor="test"
    )
    assert revoked.revoked_at is not None and revoked.revoke_reason == "leaked"
    with pytest.raises(DomainError) as exc:
        services.api_key_revoke(tenant_code="hangzhou", key_id=key.key_id, reason="again")
    assert exc.value.code == "already_revoked"


@pytest.mark.usefixtures("english")
def test_cli_issue_list_revoke():
    out = StringIO()
    call_command(
        "apikey",
        "--tenant",
        "jiaxing",
        "issue",
        "--name",
        "Library app",
        "--scope",
        "cards:read",
        "--scope",
        "transactions:read,terminals:read",
        "--days",
        "30",
        stdout=out,
    )
    text = out.getvalue()
    token = text.split("token (shown only now): ")[1].strip()
    key = ApiKey.objects.get(key_id=services.api_key_parse(token))
    assert key.scopes == ["cards:read", "terminals:read", "transactions:read"]
    out = StringIO()
    call_command("apikey", "--tenant", "jiaxing", "list", stdout=out)
    assert key.key_id in out.getvalue() and f"…{token[-4:]}" in out.getvalue()
    assert token not in out.getvalue()
    out = StringIO()
    call_command("apikey", "--tenant", "jiaxing", "revoke", key.key_id, "--reason", "app retired", stdout=out)
    assert f"revoked {key.key_id}" in out.getvalue()
    out = StringIO()
    call_command("apikey", "--tenant", "jiaxing", "list", "--active", stdout=out)
    assert key.key_id not in out.getvalue()
    with pytest.raises(CommandError, match="unknown scope"):
        call_command("apikey", "--tenant", "jiaxing", "issue", "--name", "x", "--scope", "everything")
    with pytest.raises(CommandError, match="not YYYY-MM-DD"):
        call_command(
            "apikey",
            "--tenant",
            "jiaxing",
            "issue",
            "--name",
            "x",
            "--scope",
            "cards:read",
            "--expires",
            "tomorrow",
        )
