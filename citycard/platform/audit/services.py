"""Writing to the audit log. Every service that changes something calls :func:`audit_record`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import hashes
from django.db import transaction
from django.utils import timezone

from citycard.platform.audit.models import AuditEntry, AuditHead


def canonical_json(data: Mapping[str, Any] | None) -> str:
    return json.dumps(data or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def entry_hash(
    *,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    payload: str,
    prev_hash: str,
) -> str:
    """SM3 over the canonical JSON of the entry's fields and the previous hash."""
    material = json.dumps(
        [seq, at.astimezone(UTC).isoformat(), actor, action, object_type, object_id, payload, prev_hash],
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    digest = hashes.Hash(hashes.SM3())
    digest.update(material)
    return digest.finalize().hex()


@transaction.atomic
def audit_record(
    *,
    action: str,
    actor: str,
    object_type: str = "",
    object_id: str | int = "",
    data: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry to the current schema's chain (serialised on the head row)."""
    head = AuditHead.objects.select_for_update().get(pk=1)
    # Truncated to microseconds, as PostgreSQL stores them, so the hash can be recomputed.
    at = timezone.now()
    payload = canonical_json(data)
    seq = head.seq + 1
    digest = entry_hash(
        seq=seq,
        at=at,
        actor=actor,
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        payload=payload,
        prev_hash=head.hash,
    )
    entry = AuditEntry.objects.create(
        seq=seq,
        at=at,
        actor=actor,
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        payload=payload,
        prev_hash=head.hash,
        hash=digest,
    )
    AuditHead.objects.filter(pk=1).update(seq=seq, hash=digest)
    return entry
