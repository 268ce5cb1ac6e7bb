"""Clearing as Celery tasks. Each step is one transaction and idempotent (a step already done returns
what it did), so a worker killed at any step leaves the cycle where it was and running the task again
gives the same positions and files. ``CITYCARD_CLEARING_PAUSE_AT=<step>`` holds a step open before it
commits (``validate_issuer`` holds a per-issuer validation; tests use it to kill a worker in the middle).

On a worker, ``cycle_process`` fans the issuers' validation out: after closing the cycle it replaces
itself with a chord — one ``issuer_validation`` task per issuer (each keeps its issuer's answer, in its
own transaction), joined by ``cycle_finish`` (the validation step applying the kept answers, then net and
settle), whose result is the original task's. Called in-process it runs the same steps one after the
other. A validation step that finds an issuer's answer missing (its task died) asks that issuer itself.

A task whose worker dies is handed out again by the broker (acknowledged late; Redis after its visibility
timeout); whatever a broker loses, the beat sweep ``cycles_resume_stuck`` sends again (docs/clearing.md,
"When a worker dies").
"""

from __future__ import annotations

import datetime as dt
import os
import time

from celery import chord, group
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from citycard.interop import selectors
from citycard.interop.entitlements import visitor_lists_sync
from citycard.interop.models import CycleState
from citycard.interop.services import cycles, hotlist, messages, validation
from citycard.platform.celery import app
from citycard.platform.db.commits import commit_unawaited
from citycard.platform.models import Tenant, TenantKind
from citycard.platform.observability.metrics import CLEARING_STEP_SECONDS


def _timed(step: str, run):
    """``run`` (a step's service), its duration observed by step, network and service (metrics)."""

    def timed(*, cycle, **kwargs):
        agreement = cycle.agreement
        with CLEARING_STEP_SECONDS.labels(step, agreement.network.code, agreement.service).time():
            return run(cycle=cycle, **kwargs)

    return timed


# The steps as the tasks and `citycard clearing` run them.
STEPS = {
    "close": _timed("close", cycles.cycle_close),
    "validate": _timed("validate", cycles.cycle_validate),
    "net": _timed("net", cycles.cycle_net),
    "settle": _timed("settle", cycles.cycle_settle),
}


def _pause(step: str) -> None:
    if os.environ.get("CITYCARD_CLEARING_PAUSE_AT") == step:
        time.sleep(float(os.environ.get("CITYCARD_CLEARING_PAUSE_S", "300")))


def _now(now: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(now) if now else None


def _on_worker(task) -> bool:
    return not (task.request.called_directly or task.request.is_eager)


def _same_queue(task) -> dict:
    """Routing options that keep follow-up tasks on the queue this task came from (the demo's workers
    listen on a queue of their own)."""
    queue = (task.request.delivery_info or {}).get("routing_key")
    return {"queue": queue} if queue else {}


@app.task(name="citycard.interop.tasks.outboxes_collect")
def outboxes_collect(now: str | None = None) -> dict:
    """Collect every tenant's outbox."""
    done = messages.outboxes_collect(now=_now(now))
    connection.set_schema_to_public()
    return done


@app.task(name="citycard.interop.tasks.cycle_step")
def cycle_step(network: str, service: str, date: str, step: str, now: str | None = None) -> dict:
    """One step of one cycle (close, validate, net, settle)."""
    cycle = cycles.cycle_get_or_create(
        network_code=network, service=service, business_date=dt.date.fromisoformat(date)
    )
    with transaction.atomic():
        cycle = STEPS[step](cycle=cycle, now=_now(now), actor="celery")
        _pause(step)
    connection.set_schema_to_public()
    return {"cycle": cycle.label, "state": cycle.state}


@app.task(name="citycard.interop.tasks.issuer_validation")
def issuer_validation(cycle_id: int, issuer: str, now: str | None = None) -> dict:
    """One issuer validates its records of a closed cycle; its answer is kept for the validation step."""
    with transaction.atomic():
        commit_unawaited()  # a lost answer is asked again by the step (platform.db.commits)
        kept = validation.issuer_validation_store(
            cycle_id=cycle_id, issuer_code=issuer, now=_now(now) or timezone.now()
        )
        _pause("validate_issuer")
    connection.set_schema_to_public()
    return {"cycle": cycle_id, "issuer": issuer, "rejected": None if kept is None else len(kept.rejected)}


@app.task(name="citycard.interop.tasks.cycle_finish")
def cycle_finish(
    _answers: list | None, network: str, service: str, date: str, now: str | None = None
) -> dict:
    """Validate (joining the issuers' kept answers), net and settle the cycle; the cycle's summary.
    ``_answers``: the issuer tasks' results when it ends a chord (the answers themselves are read from the
    database, so a missing one is asked again rather than trusted from a message)."""
    for step in ("validate", "net", "settle"):
        cycle_step.run(network, service, date, step, now)
    cycle = cycles.cycle_get_or_create(
        network_code=network, service=service, business_date=dt.date.fromisoformat(date)
    )
    return selectors.cycle_summary(cycle=cycle)


@app.task(bind=True, name="citycard.interop.tasks.cycle_process")
def cycle_process(self, network: str, service: str, date: str, now: str | None = None) -> dict:
    """Collect the outboxes, then every step of the cycle that is not done yet; the cycle's summary. On a
    worker the issuers validate in parallel tasks, joined before netting (module docstring)."""
    messages.outboxes_collect(now=_now(now))
    connection.set_schema_to_public()
    cycle_step.run(network, service, date, "close", now)
    cycle = cycles.cycle_get_or_create(
        network_code=network, service=service, business_date=dt.date.fromisoformat(date)
    )
    if _on_worker(self) and cycle.state == CycleState.CLOSED:
        options = _same_queue(self)
        finish = cycle_finish.s(network, service, date, now).set(**options)
        issuers = selectors.cycle_issuers_pending(cycle=cycle)
        if issuers:
            header = group(issuer_validation.si(cycle.pk, code, now).set(**options) for code in issuers)
            return self.replace(chord(header, finish))
        return self.replace(finish.clone(args=(None,)))
    return cycle_finish.run(None, network, service, date, now)


@app.task(bind=True, name="citycard.interop.tasks.cycles_close_due")
def cycles_close_due(self, now: str | None = None) -> list[str]:
    """Beat: exchange the hotlists (every member's change reaches the whole network each round), collect
    the outboxes, then take every open cycle past its cut-off through to settlement (on a worker, each
    cycle as its own ``cycle_process`` task, so its issuers fan out)."""
    moment = _now(now)
    hotlist.hotlists_exchange(now=moment)
    connection.set_schema_to_public()
    messages.outboxes_collect(now=moment)
    connection.set_schema_to_public()
    done = []
    for cycle in list(selectors.cycles_due(now=moment)):
        agreement = cycle.agreement
        args = (agreement.network.code, agreement.service, cycle.business_date.isoformat(), now)
        if _on_worker(self):
            cycle_process.apply_async(args, **_same_queue(self))
        else:
            cycle_process.run(*args)
        done.append(cycle.label)
    return done


@app.task(bind=True, name="citycard.interop.tasks.cycles_resume_stuck")
def cycles_resume_stuck(self, now: str | None = None) -> list[str]:
    """Beat: every cycle left closed, validated or netted for longer than ``CLEARING_RESUME_AFTER_S``
    since its last step (its task lost with a worker that died, or failing) is processed again from the
    step it is at (on a worker, each as its own ``cycle_process`` task); ``cycles_close_due`` does the
    same for open cycles past their cut-off. The cycles resumed, by label."""
    claimed = cycles.cycles_resume_claim(
        older_than=dt.timedelta(seconds=settings.CLEARING_RESUME_AFTER_S), now=_now(now)
    )
    done = []
    for cycle in claimed:
        agreement = cycle.agreement
        # The remaining steps take the clock's time: the business time the cycle was started with is gone.
        args = (agreement.network.code, agreement.service, cycle.business_date.isoformat(), None)
        if _on_worker(self):
            cycle_process.apply_async(args, **_same_queue(self))
        else:
            cycle_process.run(*args)
        done.append(cycle.label)
    return done


@app.task(name="citycard.interop.tasks.hotlists_exchange")
def hotlists_exchange(now: str | None = None) -> dict:
    """Members' hotlist changes to the platform, the network hotlists to every member's inbox."""
    done = hotlist.hotlists_exchange(now=_now(now))
    connection.set_schema_to_public()
    return done


@app.task(name="citycard.interop.tasks.visitor_lists_sync_all")
def visitor_lists_sync_all(now: str | None = None) -> dict:
    """Every city's and county's offline entitlement list brought up to date with the visitors'
    entitlements its roaming networks recognise (异地权益名单)."""
    serving = Tenant.objects.filter(kind__in=(TenantKind.CITY, TenantKind.COUNTY)).order_by("code")
    done = {t.code: visitor_lists_sync(acquirer=t, at=_now(now)) for t in serving if t.is_active}
    connection.set_schema_to_public()
    return done
