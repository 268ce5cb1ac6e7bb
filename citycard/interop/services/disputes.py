"""Disputes (争议, docs/clearing.md, "Disputes"): a party to a settled record disputes it inside the
agreement's window; an accepted dispute becomes an adjustment record in the next open cycle, a settled
cycle is never edited.

* ``dispute_raise`` — by a party's signed ``clearing.dispute`` message, or by clearing staff for it.
* ``dispute_resolve`` — accepted (an adjustment record reversing the disputed one, fees too) or rejected.

Reading them: ``selectors.disputes_query``, ``selectors.dispute_find``, ``selectors.open_dispute_counts``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from citycard.interop.models import (
    ClearingCycle,
    ClearingRecord,
    CycleState,
    Dispute,
    DisputeState,
    RecordKind,
    RecordStatus,
)
from citycard.interop.services.cycles import cycle_open_from, cycle_reached
from citycard.interop.services.messages import message_handler
from citycard.interop.terms import agreement_business_date
from citycard.platform.audit.services import audit_record
from citycard.platform.envelopes import Opened
from citycard.platform.errors import Conflict, DomainError, NotFound


@transaction.atomic
def dispute_raise(
    *,
    record_id: str,
    raised_by: str,
    reason: str,
    now: dt.datetime | None = None,
    actor: str | None = None,
) -> Dispute:
    """A party to a settled record disputes it inside the agreement's window (refused outside it).
    ``actor``: who recorded it when not the party itself through its signed message (clearing staff
    taking a party's dispute by phone); audited as that actor, on behalf of ``raised_by``."""
    now = now or timezone.now()
    record = (
        ClearingRecord.objects.select_related("cycle__agreement__network").filter(record_id=record_id).first()
    )
    if record is None:
        raise NotFound(gettext("no clearing record %(record)r") % {"record": record_id}, field="record_id")
    if raised_by not in (record.acquirer, record.issuer):
        raise DomainError(
            gettext("%(party)s is not a party to record %(record)s")
            % {"party": raised_by, "record": record_id},
            code="not_a_party",
        )
    cycle = record.cycle
    if not cycle_reached(cycle=cycle, state=CycleState.SETTLED):
        raise Conflict(
            gettext("record %(record)s is in cycle %(cycle)s, not settled yet")
            % {"record": record_id, "cycle": cycle.label},
            code="cycle_state",
        )
    deadline = cycle.settled_at + dt.timedelta(days=cycle.agreement.dispute_window_days)
    if now > deadline:
        raise DomainError(
            gettext("the dispute window of %(cycle)s ended at %(deadline)s")
            % {"cycle": cycle.label, "deadline": deadline.isoformat()},
            code="window_closed",
        )
    if record.kind == RecordKind.ADJUSTMENT:
        raise DomainError(gettext("an adjustment cannot be disputed"), code="invalid")
    existing = Dispute.objects.filter(record=record).exclude(state=DisputeState.REJECTED).first()
    if existing is not None:
        return existing
    dispute = Dispute.objects.create(record=record, raised_by=raised_by, reason=reason[:300], raised_at=now)
    ClearingCycle.objects.filter(pk=cycle.pk, state=CycleState.SETTLED).update(state=CycleState.DISPUTED)
    audit_record(
        action="interop.dispute_raise",
        actor=actor or f"tenant:{raised_by}",
        object_type="record",
        object_id=record_id,
        data={"reason": reason[:300], "raised_by": raised_by},
    )
    return dispute


@transaction.atomic
def dispute_resolve(
    *, dispute_id: int, accept: bool, resolution: str, actor: str, now: dt.datetime | None = None
) -> Dispute:
    """Accepted: an adjustment record reversing the disputed one (fees too) joins the open cycle of
    ``now``; the settled cycle is never edited. Rejected: nothing moves. Either way the cycle goes back
    to settled once no dispute of it is open."""
    now = now or timezone.now()
    dispute = (
        Dispute.objects.select_for_update()
        .select_related("record__cycle__agreement")
        .filter(pk=dispute_id)
        .first()
    )
    if dispute is None:
        raise NotFound(gettext("no dispute %(id)s") % {"id": dispute_id}, field="dispute")
    if dispute.state != DisputeState.OPEN:
        raise Conflict(
            gettext("dispute %(id)s is already %(state)s") % {"id": dispute_id, "state": dispute.state},
            code="dispute_state",
        )
    record = dispute.record
    if accept:
        agreement = record.cycle.agreement
        target = cycle_open_from(
            agreement=agreement, day=agreement_business_date(agreement=agreement, at=now)
        )
        adjustment = ClearingRecord.objects.create(
            record_id=f"adj-{record.record_id}",
            cycle=target,
            kind=RecordKind.ADJUSTMENT,
            message_id=f"dispute-{dispute.pk}",
            acquirer=record.acquirer,
            issuer=record.issuer,
            card_no=record.card_no,
            card_counter=record.card_counter,
            amount_fen=-record.amount_fen,
            issuer_fee_fen=-record.issuer_fee_fen,
            network_fee_fen=-record.network_fee_fen,
            accepted_at=now,
            received_at=now,
            status=RecordStatus.VALID,
            adjusts=record.record_id,
            data={"dispute": dispute.pk, "reason": dispute.reason},
        )
        dispute.adjustment = adjustment
    dispute.state = DisputeState.ACCEPTED if accept else DisputeState.REJECTED
    dispute.resolution, dispute.resolved_at, dispute.resolved_by = resolution[:300], now, actor[:150]
    dispute.save()
    cycle = record.cycle
    if not Dispute.objects.filter(record__cycle=cycle, state=DisputeState.OPEN).exists():
        ClearingCycle.objects.filter(pk=cycle.pk, state=CycleState.DISPUTED).update(state=CycleState.SETTLED)
    audit_record(
        action="interop.dispute_resolve",
        actor=actor,
        object_type="dispute",
        object_id=dispute.pk,
        data={"accepted": accept, "record": record.record_id},
    )
    return dispute


@message_handler("clearing.dispute")
def _dispute_message(opened: Opened, now: dt.datetime) -> dict[str, Any]:
    dispute = dispute_raise(
        record_id=str(opened.body.get("record_id", "")),
        raised_by=opened.sender.clearing_tenant.code,
        reason=str(opened.body.get("reason", "")),
        now=now,
    )
    return {"dispute": dispute.pk, "state": dispute.state}
