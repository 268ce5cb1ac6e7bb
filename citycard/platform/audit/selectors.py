"""Reading and verifying the audit log of the current schema."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import QuerySet

from citycard.platform.audit.models import GENESIS_HASH, AuditEntry, AuditHead
from citycard.platform.audit.services import entry_hash


@dataclass
class AuditVerification:
    entries: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def audit_entries_for(*, object_type: str, object_id: str | int) -> QuerySet[AuditEntry]:
    return AuditEntry.objects.filter(object_type=object_type, object_id=str(object_id)).order_by("seq")


def audit_verify(*, max_problems: int = 20) -> AuditVerification:
    """Walk the chain from the first entry and report every edited, missing or reordered entry."""
    result = AuditVerification()
    expected_seq, prev_hash = 1, GENESIS_HASH
    for entry in AuditEntry.objects.order_by("seq").iterator(chunk_size=5000):
        result.entries += 1
        if entry.seq != expected_seq:
            result.problems.append(
                f"entries {expected_seq}..{entry.seq - 1} are missing (deleted)"
                if entry.seq > expected_seq
                else f"entry {entry.seq} appears out of order"
            )
        if entry.prev_hash != prev_hash:
            result.problems.append(f"entry {entry.seq} does not link to the entry before it")
        recomputed = entry_hash(
            seq=entry.seq,
            at=entry.at,
            actor=entry.actor,
            action=entry.action,
            object_type=entry.object_type,
            object_id=entry.object_id,
            payload=entry.payload,
            prev_hash=entry.prev_hash,
        )
        if recomputed != entry.hash:
            result.problems.append(f"entry {entry.seq} was altered after it was written")
        expected_seq, prev_hash = entry.seq + 1, entry.hash
        if len(result.problems) >= max_problems:
            return result
    head = AuditHead.objects.filter(pk=1).first()
    if head is None:
        result.problems.append("the chain head is missing")
    elif head.seq != expected_seq - 1:
        result.problems.append(
            f"the chain head records {head.seq} entries but {expected_seq - 1} remain (entries deleted)"
        )
    elif head.hash != prev_hash:
        result.problems.append("the chain head does not match the last entry")
    return result


def audit_recent(*, limit: int = 20) -> list[dict]:
    """The newest entries of the current schema's log: sequence, action and object id."""
    return list(AuditEntry.objects.order_by("-seq").values("seq", "action", "object_id")[:limit])


def audit_count() -> int:
    return AuditEntry.objects.count()
