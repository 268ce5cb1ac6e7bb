"""Clearing cycles (清算周期) and their steps (docs/clearing.md, "Cycles" and "Orchestration").

* ``cycle_get_or_create`` — an agreement's cycle of a business date (a monthly agreement: its month's),
  created open when it has none yet; ``cycle_open_from`` — the open cycle a record of a date joins.
* ``cycle_close`` → ``cycle_validate`` → ``cycle_net`` → ``cycle_settle``: one transaction each; a step
  that already happened returns what it did, so every step can be re-run after a crash. ``cycle_run``
  runs those not done yet.
* ``cycles_resume_claim`` — the cycles left between steps (a worker died with their task) for the sweep
  to send again.

The steps' work lives with its topic: the issuers' validation in ``validation``, the matrix, positions,
instructions and ledger in ``netting``, the participants' files in ``reconciliation``. Reading cycles:
``citycard.interop.selectors`` (``cycle_find``, ``cycles_due``, ``cycle_summary``, …).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django.db import connection, transaction
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone
from django.utils.translation import gettext

from citycard.interop.models import ClearingCycle, CyclePeriod, CycleState, IssuerValidation, RoamingAgreement
from citycard.interop.selectors import agreement_get, cycle_issuers_pending
from citycard.interop.services import netting, reconciliation, validation
from citycard.interop.services.messages import messages_deliver
from citycard.interop.terms import agreement_next_date, cycle_window
from citycard.platform.audit.services import audit_record
from citycard.platform.errors import Conflict
from citycard.terminal_kit.beijing import BEIJING

log = logging.getLogger(__name__)


# --- which cycle a business date belongs to -------------------------------------------------------------------


def _cycle(agreement: RoamingAgreement, day: dt.date, *, lock: bool = False) -> ClearingCycle:
    """The agreement's cycle of business date ``day``, created open with the window its version gives."""
    opens_at, cut_off_at = cycle_window(agreement=agreement, day=day)
    cycle, _ = ClearingCycle.objects.get_or_create(
        agreement=agreement, business_date=day, defaults={"opens_at": opens_at, "cut_off_at": cut_off_at}
    )
    if lock:
        # A share lock: records of several senders join the open cycle at once (collections in parallel),
        # while closing (FOR UPDATE) waits for them and they for it, so none joins a closed cycle.
        with connection.cursor() as cur:
            cur.execute("SELECT 1 FROM interop_clearingcycle WHERE id = %s FOR SHARE", [cycle.pk])
        cycle.refresh_from_db()
    return cycle


def cycle_open_from(*, agreement: RoamingAgreement, day: dt.date) -> ClearingCycle:
    """The cycle of ``day`` if it is still open, else the next open one (late records move forward;
    a closed cycle never reopens), created when missing and share-locked until the caller's transaction
    ends, so it cannot close while a record joins it."""
    while True:
        cycle = _cycle(agreement, day, lock=True)
        if cycle.state == CycleState.OPEN:
            return cycle
        day = agreement_next_date(agreement=agreement, day=day)


def cycle_get_or_create(*, network_code: str, service: str, business_date: dt.date) -> ClearingCycle:
    """The agreement's cycle of ``business_date`` (a monthly agreement: its month's) with its agreement and
    network, created open when there is none yet (a step or a run asked for a day nothing was collected for).
    Only reading: ``selectors.cycle_find``."""
    agreement = agreement_get(network_code=network_code, service=service)
    if agreement.period == CyclePeriod.MONTHLY:
        business_date = business_date.replace(day=1)
    cycle = (
        ClearingCycle.objects.select_related("agreement__network")
        .filter(agreement=agreement, business_date=business_date)
        .first()
    )
    if cycle is None:
        cycle = _cycle(agreement, business_date)
        cycle = ClearingCycle.objects.select_related("agreement__network").get(pk=cycle.pk)
    return cycle


# --- the cycle steps ---------------------------------------------------------------------------------------


def _locked(cycle: ClearingCycle) -> ClearingCycle:
    """The cycle read again and locked for the step's transaction: steps of one cycle run one at a time."""
    return ClearingCycle.objects.select_for_update().select_related("agreement__network").get(pk=cycle.pk)


def _refuse_step(cycle: ClearingCycle, step: str, needed: str) -> None:
    raise Conflict(
        gettext("cycle %(cycle)s is %(state)s; %(step)s needs it %(needed)s")
        % {"cycle": cycle.label, "state": cycle.state, "step": step, "needed": needed},
        code="cycle_state",
    )


_ORDER = [CycleState.OPEN, CycleState.CLOSED, CycleState.VALIDATED, CycleState.NETTED, CycleState.SETTLED]


def cycle_reached(*, cycle: ClearingCycle, state: str) -> bool:
    """Whether the cycle is at ``state`` or further on (a disputed cycle counts as settled)."""
    current = CycleState.SETTLED if cycle.state == CycleState.DISPUTED else cycle.state
    return _ORDER.index(current) >= _ORDER.index(state)


@transaction.atomic
def cycle_close(
    *, cycle: ClearingCycle, now: dt.datetime | None = None, actor: str = "system"
) -> ClearingCycle:
    """Cut the cycle off (open → closed): refused before its cut-off; the next cycle is opened so late
    records have somewhere to go. Closing a closed cycle returns it unchanged."""
    now = now or timezone.now()
    cycle = _locked(cycle)
    if cycle_reached(cycle=cycle, state=CycleState.CLOSED):
        return cycle
    if now < cycle.cut_off_at:
        raise Conflict(
            gettext("cycle %(cycle)s cuts off at %(cut_off)s; it cannot close before")
            % {"cycle": cycle.label, "cut_off": cycle.cut_off_at.astimezone(BEIJING).isoformat()},
            code="before_cut_off",
        )
    cycle.state, cycle.closed_at, cycle.progressed_at = CycleState.CLOSED, now, timezone.now()
    cycle.save(update_fields=["state", "closed_at", "progressed_at"])
    # Fresh statistics once the cycle's records are in: validation, netting (its parallel GROUP BY) and
    # settlement plan with the cycle's real size. A sample, not a scan, of the columns they filter and
    # group by (not the wide ``data``); no vacuum is needed: validation rewrites no record.
    with connection.cursor() as cur:
        cur.execute("ANALYZE interop_clearingrecord (cycle_id, issuer, acquirer, status, kind)")
    _cycle(cycle.agreement, agreement_next_date(agreement=cycle.agreement, day=cycle.business_date))
    audit_record(action="interop.cycle_close", actor=actor, object_type="cycle", object_id=cycle.label)
    return cycle


def _issuers_validate_inline(jobs: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """``cycle_validate``'s default ``issuers_map``: the jobs one after the other, in this process."""
    return (validation.issuer_validate(**job) for job in jobs)


@transaction.atomic
def cycle_validate(
    *,
    cycle: ClearingCycle,
    now: dt.datetime | None = None,
    actor: str = "system",
    issuers_map: Any = None,
) -> ClearingCycle:
    """Each issuer validates its records (closed → validated) in its own schema through
    ``exchange.clearing_validate`` (``validation.issuer_validate``); rejected records go back to their
    acquirers as exceptions.

    An issuer whose answer was already kept (``validation.issuer_validation_store``: the Celery tasks fan
    the issuers out before this step, docs/clearing.md "Orchestration") is not asked again. The others run
    through ``issuers_map``: called with the list of jobs, each the keyword arguments of
    ``validation.issuer_validate`` (``cycle_id``, ``issuer_code``, ``now``), it returns their results in job
    order. By default they run one after the other in this transaction; a process pool mapping
    ``issuer_validate(**job)`` over the jobs (benchmarks/clearing.py) runs them in parallel, each on its own
    connection committing in the issuer's schema only (re-validating a record gives the same answer, so a
    crash before this step commits changes nothing). The rejections are applied here, in issuer order, and
    the step commits as one transaction; only the rejections are written (the records left pending read
    valid once the cycle is validated, ``models.record_status``)."""
    now = now or timezone.now()
    cycle = _locked(cycle)
    if cycle_reached(cycle=cycle, state=CycleState.VALIDATED):
        return cycle
    if cycle.state != CycleState.CLOSED:
        _refuse_step(cycle, "validation", "closed")
    label = cycle.label
    issuers = cycle_issuers_pending(cycle=cycle)
    kept = {
        v.issuer: {"checks": v.checks, "rejected": [dict(item) for item in v.rejected]}
        for v in IssuerValidation.objects.filter(cycle=cycle, issuer__in=issuers)
    }
    jobs = [
        {"cycle_id": cycle.pk, "issuer_code": issuer_code, "now": now}
        for issuer_code in issuers
        if issuer_code not in kept
    ]
    results = (issuers_map or _issuers_validate_inline)(jobs)
    asked = dict(zip([job["issuer_code"] for job in jobs], results, strict=True))
    checks: dict[str, list[str]] = {}
    exceptions: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for issuer_code in issuers:
        result = kept.get(issuer_code) or asked[issuer_code]
        checks[issuer_code] = result["checks"]
        rejected = result["rejected"]
        if rejected:
            validation.rejections_apply(cycle=cycle, rejected=rejected)
        for item in rejected:
            acquirer, amount = item.pop("acquirer"), item.pop("amount_fen")
            exceptions[acquirer].append({**item, "issuer": issuer_code, "amount_fen": amount})
    # Only the rejections are written: the records left pending are valid once the cycle is validated
    # (models.record_status), so no row of a million-record cycle is rewritten here.
    messages_deliver(
        deliveries=[
            (
                acquirer,
                f"exc-{label}-{acquirer}",
                {"cycle": label, "exceptions": sorted(exceptions[acquirer], key=lambda e: e["record_id"])},
            )
            for acquirer in sorted(exceptions)
        ],
        kind="clearing.exceptions",
        now=now,
    )
    cycle.state, cycle.validated_at, cycle.validation_checks = CycleState.VALIDATED, now, checks
    cycle.progressed_at = timezone.now()
    cycle.save(update_fields=["state", "validated_at", "validation_checks", "progressed_at"])
    audit_record(
        action="interop.cycle_validate",
        actor=actor,
        object_type="cycle",
        object_id=label,
        data={
            "issuers": len(issuers),
            "answers_kept": len(kept),
            "exceptions": sum(len(v) for v in exceptions.values()),
        },
    )
    return cycle


@transaction.atomic
def cycle_net(
    *, cycle: ClearingCycle, now: dt.datetime | None = None, actor: str = "system"
) -> ClearingCycle:
    """Bilateral matrix and multilateral net positions (validated → netted), in SQL; the positions are
    posted to the ledger (one journal, Σ = 0)."""
    now = now or timezone.now()
    cycle = _locked(cycle)
    if cycle_reached(cycle=cycle, state=CycleState.NETTED):
        return cycle
    if cycle.state != CycleState.VALIDATED:
        _refuse_step(cycle, "netting", "validated")
    netting.positions_net(cycle=cycle, now=now)
    cycle.state, cycle.netted_at, cycle.progressed_at = CycleState.NETTED, now, timezone.now()
    cycle.save(update_fields=["state", "netted_at", "progressed_at"])
    audit_record(action="interop.cycle_net", actor=actor, object_type="cycle", object_id=cycle.label)
    return cycle


@transaction.atomic
def cycle_settle(
    *,
    cycle: ClearingCycle,
    now: dt.datetime | None = None,
    actor: str = "system",
    files_map: Any = None,
) -> ClearingCycle:
    """Settlement instructions through the network's settlement account, their ledger journal, and a
    reconciliation file for every participant, stored once, its signed manifest delivered to its inbox
    (netted → settled).

    ``files_map`` writes the files: called with the list of jobs, each the keyword arguments of
    ``reconciliation.reconciliation_packed`` (``cycle_id``, ``participant``, ``totals``), it returns their
    results in job order (by default one after the other here; a process pool writes them in parallel —
    they only read what validation and netting
    committed). Storing and delivering them stays in this transaction."""
    now = now or timezone.now()
    cycle = _locked(cycle)
    if cycle_reached(cycle=cycle, state=CycleState.SETTLED):
        return cycle
    if cycle.state != CycleState.NETTED:
        _refuse_step(cycle, "settlement", "netted")
    netting.settlement_instruct(cycle=cycle, now=now)
    netting.matrix_picture_store(cycle=cycle)
    reconciliation.reconciliation_files_send(cycle=cycle, now=now, files_map=files_map)
    cycle.state, cycle.settled_at, cycle.progressed_at = CycleState.SETTLED, now, timezone.now()
    cycle.save(update_fields=["state", "settled_at", "progressed_at"])
    audit_record(action="interop.cycle_settle", actor=actor, object_type="cycle", object_id=cycle.label)
    return cycle


def cycle_run(
    *, cycle: ClearingCycle, now: dt.datetime | None = None, actor: str = "system"
) -> ClearingCycle:
    """Every step that has not happened yet, in order."""
    for step in (cycle_close, cycle_validate, cycle_net, cycle_settle):
        cycle = step(cycle=cycle, now=now, actor=actor)
    return cycle


# --- resuming cycles left between steps ---------------------------------------------------------------------

RESUMABLE_STATES = (CycleState.CLOSED, CycleState.VALIDATED, CycleState.NETTED)


@transaction.atomic
def cycles_resume_claim(
    *, older_than: dt.timedelta, now: dt.datetime | None = None, actor: str = "beat"
) -> list[ClearingCycle]:
    """The cycles left closed, validated or netted for longer than ``older_than`` since a step last moved
    them on or this sweep last resumed them (by the clock: ``progressed_at``, ``resumed_at``), each
    stamped as resumed, audited (``interop.cycle_resume``) and logged; the caller sends their processing
    again (``tasks.cycles_resume_stuck``). What leaves a cycle there: its task lost with a worker that
    died (on a broker that does not hand it out again), or a step that fails.

    A cycle whose row is locked is being worked on right now — a step holds it ``FOR UPDATE``, an issuer's
    validation ``FOR SHARE`` — and is skipped (``SKIP LOCKED``); so is one another sweep claimed, once
    that one commits (its ``resumed_at`` is then fresh). Sending a cycle again runs no step twice either
    way: each step locks the row and returns at once when its state is already reached."""
    now = now or timezone.now()
    stuck = list(
        ClearingCycle.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("agreement__network")
        # Cycles from before the clock was kept: their closing time.
        .annotate(last_moved=Coalesce(Greatest("progressed_at", "resumed_at"), "closed_at"))
        .filter(state__in=RESUMABLE_STATES, last_moved__lt=now - older_than)
        .order_by("last_moved", "pk")
    )
    for cycle in stuck:
        idle_s = int((now - cycle.last_moved).total_seconds())
        cycle.resumed_at, cycle.resumes = now, cycle.resumes + 1
        cycle.save(update_fields=["resumed_at", "resumes"])
        label = cycle.label
        log.warning(
            "clearing: resuming cycle %s, %s for %d s since its last step (resume %d)",
            label,
            cycle.state,
            idle_s,
            cycle.resumes,
        )
        audit_record(
            action="interop.cycle_resume",
            actor=actor,
            object_type="cycle",
            object_id=label,
            data={"state": cycle.state, "idle_s": idle_s, "resumes": cycle.resumes},
        )
    return stuck
