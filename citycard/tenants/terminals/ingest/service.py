"""``batch_ingest``: one signed batch from a terminal, taken and acknowledged (批量上传)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from citycard.platform.audit.services import audit_record
from citycard.platform.keys import signed_body, tenant_signature
from citycard.platform.models import Tenant
from citycard.tenants.terminals import checks as checks_module
from citycard.tenants.terminals.checks import BatchContext, Flag, StoredContext, Tap, clearing_record
from citycard.tenants.terminals.ingest.ack import ack_canonical, ack_parts, ack_rebuild
from citycard.tenants.terminals.ingest.decode import (
    BatchRefused,
    Header,
    NotCommon,
    body_check,
    common_decode,
    document_read,
    header_read,
)
from citycard.tenants.terminals.ingest.outcomes import (
    ACCEPTED,
    CONFLICT,
    DUPLICATE,
    REJECTED,
    local_day,
    taps_settle,
    taps_sort,
)
from citycard.tenants.terminals.ingest.signature import signature_verify
from citycard.tenants.terminals.ingest.spec import TapWindow, tap_window
from citycard.tenants.terminals.ingest.storage import (
    BatchColumns,
    BatchRow,
    ExceptionRow,
    Lookup,
    StoredBatch,
    batch_write,
    copy_lines,
    stored_batch,
    taps_claim,
    taps_copy,
)
from citycard.tenants.terminals.models import TerminalStatus
from citycard.tenants.terminals.partitions import partitions_ensure
from citycard.tenants.terminals.verify import flags_sql, taps_verify, verify_inline

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestResult:
    body: bytes  # the signed acknowledgement, exactly as sent (and resent)
    replayed: bool
    accepted: int
    duplicates: int
    rejected: int
    conflicts: int = 0  # taps whose natural key came with other content before (stored or in this batch)
    terminal_id: str = ""  # the terminal whose key signed the batch
    # Rejected taps by reason (a stored batch's; a resend's are not counted again: empty).
    rejected_by_reason: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Reading:
    document: dict[str, Any]  # {"payload": …, "signature": …}
    canonical: bytes  # the payload's canonical bytes, what the signature must cover
    checked: bool  # the common form: its transactions are Taps that passed already


def _readings(body: bytes, window: TapWindow) -> Iterator[_Reading]:
    """The body in the common form if it is one, then (if the signature is over other bytes) the general way."""
    body_check(body)
    common = common_decode(body, window)
    if common is not None:
        yield _Reading(common.document, common.canonical, checked=True)
    document, canonical = document_read(body)
    yield _Reading(document, canonical, checked=False)


def batch_ingest(*, tenant: Tenant, body: bytes, received_at: dt.datetime | None = None) -> IngestResult:
    """Take one signed batch uploaded to ``tenant``'s domain; return the signed acknowledgement.

    Raises BatchRefused (nothing written) for a malformed, oversized, unsigned or wrongly signed batch,
    an unknown or suspended terminal, a batch for another tenant, or a batch id reused with other content.
    """
    received_at = received_at or timezone.now()
    window = tap_window(received_at)
    for reading in _readings(body, window):
        try:
            signer = signature_verify(
                document=reading.document,
                canonical=reading.canonical,
                tenant=tenant,
                received_at=received_at,
                common=reading.checked,
            )
            break
        except NotCommon:
            continue  # signed in another form of the same content: the general path decides
    header = _header_check(reading.document["payload"], signer=signer, tenant=tenant)
    sha = hashlib.sha256(reading.canonical).hexdigest()
    terminal_id = signer.terminal.terminal_id
    if signer.stored is not None:
        return _resend(signer.stored, header=header, sha=sha, terminal_id=terminal_id, tenant=tenant)
    try:
        return _batch_store(
            tenant=tenant,
            signer=signer,
            header=header,
            sha=sha,
            received_at=received_at,
            window=window,
            checked=reading.checked,
        )
    except IntegrityError:
        stored = stored_batch(header.batch_id)  # another upload of the same batch id committed first
        if stored is None:
            raise
        return _resend(stored, header=header, sha=sha, terminal_id=terminal_id, tenant=tenant)


def _header_check(payload: dict[str, Any], *, signer: Lookup, tenant: Tenant) -> Header:
    """The payload's header, once its terminal is the signer's, active, and of this tenant."""
    terminal = signer.terminal
    if payload.get("terminal_id") != terminal.terminal_id:
        raise BatchRefused(
            f"the batch claims terminal {payload.get('terminal_id')!r} but is signed by {terminal.terminal_id}'s key",
            code="foreign_signature",
            status=403,
        )
    if terminal.status != TerminalStatus.ACTIVE:
        raise BatchRefused(
            f"terminal {terminal.terminal_id} is suspended: {terminal.status_reason or 'no reason given'}",
            code="terminal_suspended",
            status=403,
        )
    if payload.get("tenant") != tenant.code:
        raise BatchRefused(
            f"the batch is for tenant {payload.get('tenant')!r}, this is {tenant.code}",
            code="wrong_tenant",
            status=403,
        )
    return header_read(payload)


def _resend(
    stored: StoredBatch, *, header: Header, sha: str, terminal_id: str, tenant: Tenant
) -> IngestResult:
    """A batch id already stored: the same content gets the same acknowledgement, other content 409."""
    batch_id = header.batch_id
    if stored.sha256 == sha and stored.terminal_id == terminal_id:
        counts = {ACCEPTED: stored.accepted, DUPLICATE: stored.duplicates, REJECTED: stored.rejected}
        body = ack_rebuild(
            parts=stored.ack_parts,
            batch_id=batch_id,
            terminal_id=terminal_id,
            raw_taps=header.taps,
            counts=counts,
        )
        return IngestResult(
            body, True, stored.accepted, stored.duplicates, stored.rejected, counts[CONFLICT], terminal_id
        )
    log.warning(
        "batch %s from %s conflicts with the stored one (sha256 %s ≠ %s)",
        batch_id,
        terminal_id,
        sha,
        stored.sha256,
    )
    audit_record(
        action="terminal.batch_conflict",
        actor=f"terminal:{terminal_id}",
        object_type="batch",
        object_id=batch_id,
        data={
            "sha256": sha,
            "stored_sha256": stored.sha256,
            "stored_terminal": stored.terminal_id,
            "tenant": tenant.code,
        },
    )
    raise BatchRefused(
        f"batch {batch_id} was already received with different content", code="batch_conflict", status=409
    )


@transaction.atomic
def _batch_store(
    *,
    tenant: Tenant,
    signer: Lookup,
    header: Header,
    sha: str,
    received_at: dt.datetime,
    window: TapWindow,
    checked: bool,
) -> IngestResult:
    """A new batch: its taps sorted, claimed and copied, checked, acknowledged, and the batch written."""
    terminal, batch_pk = signer.terminal, signer.batch_pk
    acquirer, raw_taps = tenant.clearing_tenant, header.taps
    # Roaming taps reach the interop outbox in this transaction when the checks run inline; otherwise the
    # verification stage hands them over, many batches in one envelope.
    inline = verify_inline()
    sink = checks_module.ROAMING_SINK if inline else None
    sorting = taps_sort(
        raw_taps,
        checked=checked,
        window=window,
        acquirer=acquirer,
        terminal_id=terminal.terminal_id,
        batch_pk=batch_pk,
    )
    new: list[Tap] = []
    mark = terminal.last_seq
    if sorting.valid:
        partitions_ensure(sorting.months)
        claim = taps_claim(terminal=terminal, seqs=[tap.terminal_seq for tap in sorting.valid])
        mark = claim.mark
        new = taps_settle(sorting, claim=claim, raw_taps=raw_taps)
        if new:
            batch = BatchColumns(
                received_at=received_at,
                batch_pk=batch_pk,
                terminal_id=terminal.terminal_id,
                rule_version=header.rule_version,
                hotlist_version=header.hotlist_version,
                acquirer=acquirer.code,
            )
            taps_copy(copy_lines(new, batch=batch, roaming_state="sent" if sink is not None else "pending"))

    ctx = BatchContext(
        tenant=tenant,
        acquirer=acquirer,
        terminal_pk=terminal.pk,
        terminal_id=terminal.terminal_id,
        terminal_last_seq=mark,
        batch_pk=batch_pk,
        batch_id=header.batch_id,
        received_at=received_at,
        terminal_clock=header.created_at,
        rule_version=header.rule_version,
        hotlist_version=header.hotlist_version,
        all_terminal_seqs=tuple(sorting.all_seqs),
        card_tac_key=signer.card_tac_key,
        latest_tap=sorting.latest_tap,
    )
    flags: list[Flag] = [flag for check in checks_module.BATCH_CHECKS for flag in check(ctx, new)]
    if inline:
        stored = StoredContext(tenant=tenant, acquirer=acquirer, card_tac_key=signer.card_tac_key)
        flags.extend(taps_verify(ctx=stored, taps=new))
    counts = sorting.counts()
    if counts[CONFLICT]:
        log.warning(
            "batch %s from %s: %d taps conflict with taps of the same natural key (exceptions, reason conflict)",
            header.batch_id,
            terminal.terminal_id,
            counts[CONFLICT],
        )
    canonical = ack_canonical(
        batch_id=header.batch_id,
        terminal_id=terminal.terminal_id,
        received_at=received_at,
        raw_taps=raw_taps,
        outcomes=sorting.outcomes,
        counts=counts,
    )
    signature = json.dumps(tenant_signature(tenant=tenant, signed=canonical, key=signer.signing_key))
    if sink is not None:
        _roaming_hand_off(ctx, new, sink, signer.signing_key)

    top = max(sorting.all_seqs) if sorting.all_seqs else None
    batch_write(
        batch=BatchRow(
            pk=batch_pk,
            batch_id=header.batch_id,
            terminal_pk=terminal.pk,
            sha256=sha,
            created_at=header.created_at,
            received_at=received_at,
            clock_skew_s=max(
                min(int((header.created_at - received_at).total_seconds()), 2**31 - 1), -(2**31)
            ),
            rule_version=header.rule_version,
            hotlist_version=header.hotlist_version,
            tap_count=len(raw_taps),
            accepted=counts[ACCEPTED],
            duplicates=counts[DUPLICATE],
            rejected=counts[REJECTED],
            ack_parts=ack_parts(received_at=received_at, signature=signature, outcomes=sorting.outcomes),
            first_tx_id=min(t.tx_id for t in new) if new else None,
            last_tx_id=max(t.tx_id for t in new) if new else None,
            verified_at=received_at if inline or not new else None,  # no new tap: nothing left to verify
        ),
        flags_sql=flags_sql(flags=flags, at=received_at) if flags else None,
        exceptions=_held(new, sorting.routes) + sorting.exceptions,
        top_seq=top if top is not None and (mark is None or top > mark) else None,
    )
    return IngestResult(
        signed_body(canonical, signature),
        False,
        counts[ACCEPTED],
        counts[DUPLICATE],
        counts[REJECTED],
        counts[CONFLICT],
        terminal.terminal_id,
        sorting.rejected_by_reason(),
    )


def _held(new: list[Tap], routes: dict) -> list[ExceptionRow]:
    """The new taps held for want of a route (an unknown issuer…), for the exceptions table."""
    rows = []
    for tap in new:
        if tap.routing == "held":
            route = routes[(tap.issuer, local_day(tap))]
            rows.append(
                ExceptionRow(
                    "held",
                    route.reason,
                    route.message,
                    tap.index,
                    tap.tx_id,
                    tap.tapped_at,
                    tap.card_no,
                    tap.issuer,
                    "{}",
                )
            )
    return rows


def _roaming_hand_off(
    ctx: BatchContext, new: list[Tap], sink: checks_module.RoamingSink, signing_key
) -> None:
    """The roaming taps, stored already as ``outbox_state = 'sent'``, into the interop outbox."""
    roaming = [t for t in new if t.routing == "roaming"]
    if not roaming:
        return
    records = [
        clearing_record(
            ctx_acquirer=ctx.acquirer.code, batch_id=ctx.batch_id, terminal_id=ctx.terminal_id, tap=t
        )
        for t in roaming
    ]
    sink(records, f"terminal:{ctx.terminal_id}", signing_key=signing_key)
