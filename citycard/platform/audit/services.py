"""Writing to the audit log. Every service that changes something calls :func:`audit_record`."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import hashes
from django.db import connection, transaction
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
    return _digest(
        [seq, at.astimezone(UTC).isoformat(), actor, action, object_type, object_id, payload, prev_hash]
    )


def _digest(fields: list[Any]) -> str:
    material = json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()
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


@transaction.atomic
def audit_record_many(
    *,
    action: str,
    actor: str,
    object_type: str,
    entries: Sequence[tuple[str | int, Mapping[str, Any] | None]],
) -> int:
    """Append one entry per ``(object_id, data)`` to the current schema's chain, set-based: the head is
    locked once, each entry's hash chained on the previous one's (SM3, as :func:`audit_record`; the chain
    is sequential by design, so the hashes are computed here), and the rows are written by one
    ``INSERT … SELECT`` from arrays, the head moved once. For actions on many objects at once (e.g. an
    automatic grant to every eligible cardholder). Returns how many were written."""
    if not entries:
        return 0
    head = AuditHead.objects.select_for_update().get(pk=1)
    at = timezone.now()
    at_text = at.astimezone(UTC).isoformat()  # as entry_hash writes it, once for the batch
    seqs, object_ids, payloads, prevs, digests = [], [], [], [], []
    prev, seq = head.hash, head.seq
    for object_id, data in entries:
        seq += 1
        payload = canonical_json(data)
        digest = _digest([seq, at_text, actor, action, object_type, str(object_id), payload, prev])
        seqs.append(seq)
        object_ids.append(str(object_id))
        payloads.append(payload)
        prevs.append(prev)
        digests.append(digest)
        prev = digest
    with connection.cursor() as cur:
        cur.execute(
            f"""INSERT INTO {AuditEntry._meta.db_table}
                    (seq, at, actor, action, object_type, object_id, payload, prev_hash, hash)
                SELECT e.seq, %s, %s, %s, %s, e.object_id, e.payload, e.prev_hash, e.hash
                  FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[])
                       AS e(seq, object_id, payload, prev_hash, hash)""",
            [at, actor, action, object_type, seqs, object_ids, payloads, prevs, digests],
        )
    AuditHead.objects.filter(pk=1).update(seq=seq, hash=prev)
    return len(seqs)
