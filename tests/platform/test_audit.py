"""The hash-chained audit log detects any edited or deleted entry."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django_tenants.utils import schema_context

from citycard.platform.audit.models import AuditEntry
from citycard.platform.audit.selectors import audit_entries_for, audit_verify
from citycard.platform.audit.services import audit_record

pytestmark = pytest.mark.django_db


def _tamper(sql: str, params=()) -> None:
    """What someone with database access could do: switch the guard off and change rows."""
    with connection.cursor() as cur:
        cur.execute("ALTER TABLE audit_auditentry DISABLE TRIGGER USER")
        cur.execute(sql, params)
        cur.execute("ALTER TABLE audit_auditentry ENABLE TRIGGER USER")


@pytest.fixture
def chain():
    with schema_context("jiaxing"):
        entries = [
            audit_record(
                action="card.freeze",
                actor="user:clerk",
                object_type="card",
                object_id=f"33040001{i}",
                data={"reason": "lost", "n": i, "名字": "张三"},
            )
            for i in range(5)
        ]
        yield entries


def test_intact_chain_verifies(chain):
    result = audit_verify()
    assert result.ok, result.problems
    assert result.entries >= 5
    assert [e.seq for e in audit_entries_for(object_type="card", object_id="330400012")] == [chain[2].seq]


def test_updates_and_deletes_are_refused_by_the_database(chain):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEntry.objects.filter(pk=chain[0].pk).update(actor="someone else")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEntry.objects.filter(pk=chain[0].pk).delete()


def test_edited_entry_is_detected(chain):
    _tamper("UPDATE audit_auditentry SET payload = %s WHERE id = %s", ['{"reason":"found"}', chain[2].pk])
    result = audit_verify()
    assert not result.ok
    assert f"entry {chain[2].seq} was altered" in " ".join(result.problems)


def test_rehashed_entry_breaks_the_next_link(chain):
    # Recomputing the edited entry's own hash is not enough: the next entry still points at the old one.
    from citycard.platform.audit.services import entry_hash

    e = chain[1]
    forged = entry_hash(
        seq=e.seq,
        at=e.at,
        actor="nobody",
        action=e.action,
        object_type=e.object_type,
        object_id=e.object_id,
        payload=e.payload,
        prev_hash=e.prev_hash,
    )
    _tamper("UPDATE audit_auditentry SET actor = 'nobody', hash = %s WHERE id = %s", [forged, e.pk])
    problems = " ".join(audit_verify().problems)
    assert f"entry {chain[2].seq} does not link" in problems


def test_deleted_entry_is_detected(chain):
    _tamper("DELETE FROM audit_auditentry WHERE id = %s", [chain[2].pk])
    assert "missing (deleted)" in " ".join(audit_verify().problems)


def test_deleting_the_newest_entries_is_detected(chain):
    _tamper("DELETE FROM audit_auditentry WHERE id IN (%s, %s)", [chain[3].pk, chain[4].pk])
    assert "entries deleted" in " ".join(audit_verify().problems)


def test_cli_verify_reports_tampering(chain, capsys):
    call_command("audit", "verify", "--tenant", "jiaxing")
    assert "jiaxing：正常" in capsys.readouterr().out  # Chinese first (docs/cli.md, "Language")
    _tamper("UPDATE audit_auditentry SET actor = 'x' WHERE id = %s", [chain[0].pk])
    connection.set_schema_to_public()
    with pytest.raises(CommandError, match="条审计链校验失败"):
        call_command("audit", "verify")
    out = capsys.readouterr().out
    assert "jiaxing：已被篡改" in out and "hangzhou：正常" in out


def test_chains_are_per_schema(chain):
    with schema_context("hangzhou"):
        assert not AuditEntry.objects.filter(object_id__startswith="33040001").exists()
        assert audit_verify().ok
