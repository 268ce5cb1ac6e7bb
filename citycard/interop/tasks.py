"""Clearing as Celery tasks. Each step is one transaction and idempotent (a step already done returns
what it did), so a worker killed at any step leaves the cycle where it was and running the task again
gives the same positions and files. ``CITYCARD_CLEARING_PAUSE_AT=<step>`` holds a step open before it
commits (tests use it to kill a worker in the middle of a step)."""

from __future__ import annotations

import datetime as dt
import os
import time

from django.db import connection, transaction

from citycard.interop import hotlist, selectors, services
from citycard.platform.celery import app

STEPS = {
    "close": services.cycle_close,
    "validate": services.cycle_validate,
    "net": services.cycle_net,
    "settle": services.cycle_settle,
}


def _pause(step: str) -> None:
    if os.environ.get("CITYCARD_CLEARING_PAUSE_AT") == step:
        time.sleep(float(os.environ.get("CITYCARD_CLEARING_PAUSE_S", "300")))


def _now(now: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(now) if now else None


@app.task(name="citycard.interop.tasks.outboxes_collect")
def outboxes_collect(now: str | None = None) -> dict:
    """Collect every tenant's outbox."""
    done = services.outboxes_collect(now=_now(now))
    connection.set_schema_to_public()
    return done


@app.task(name="citycard.interop.tasks.cycle_step")
def cycle_step(network: str, service: str, date: str, step: str, now: str | None = None) -> dict:
    """One step of one cycle (close, validate, net, settle)."""
    cycle = services.cycle_get(
        network_code=network, service=service, business_date=dt.date.fromisoformat(date)
    )
    with transaction.atomic():
        cycle = STEPS[step](cycle=cycle, now=_now(now), actor="celery")
        _pause(step)
    connection.set_schema_to_public()
    return {"cycle": services.cycle_label(cycle), "state": cycle.state}


@app.task(name="citycard.interop.tasks.cycle_process")
def cycle_process(network: str, service: str, date: str, now: str | None = None) -> dict:
    """Collect the outboxes, then every step of the cycle that is not done yet; the cycle's summary."""
    services.outboxes_collect(now=_now(now))
    connection.set_schema_to_public()
    for step in STEPS:
        cycle_step.run(network, service, date, step, now)
    cycle = services.cycle_get(
        network_code=network, service=service, business_date=dt.date.fromisoformat(date)
    )
    return selectors.cycle_summary(cycle=cycle)


@app.task(name="citycard.interop.tasks.cycles_close_due")
def cycles_close_due(now: str | None = None) -> list[str]:
    """Beat: exchange the hotlists (every member's change reaches the whole network each round), collect
    the outboxes, then take every open cycle past its cut-off through to settlement."""
    moment = _now(now)
    hotlist.hotlists_exchange(now=moment)
    connection.set_schema_to_public()
    services.outboxes_collect(now=moment)
    connection.set_schema_to_public()
    done = []
    for cycle in list(services.due_cycles(now=moment)):
        agreement = cycle.agreement
        cycle_process.run(agreement.network.code, agreement.service, cycle.business_date.isoformat(), now)
        done.append(services.cycle_label(cycle))
    return done


@app.task(name="citycard.interop.tasks.hotlists_exchange")
def hotlists_exchange(now: str | None = None) -> dict:
    """Members' hotlist changes to the platform, the network hotlists to every member's inbox."""
    done = hotlist.hotlists_exchange(now=_now(now))
    connection.set_schema_to_public()
    return done
