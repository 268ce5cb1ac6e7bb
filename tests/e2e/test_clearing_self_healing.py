"""Self-healing clearing: a worker killed (SIGKILL to its whole process group) while a step of a cycle is
held open, and nothing restarted by hand but a worker. The cycle must settle by itself, with the net
positions of an uninterrupted run of the same records and Σ = 0:

* on the default (embedded Redis) broker and on a Redis server of its own, by redelivery: the task the
  dead worker held is handed out again after its visibility timeout (no beat runs);
* on the filesystem broker, which loses the task, by the beat sweep ``cycles_resume_stuck`` (the
  restarted worker runs beat).

Timings are shortened through the environment: visibility timeout 8 s, resume age 5 s, sweep every 2 s."""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from celery import Celery
from django.conf import settings
from django.db import connection

from citycard.interop import tasks
from citycard.interop.models import ClearingCycle, IssuerValidation
from citycard.interop.selectors import cycle_summary
from citycard.interop.services.agreements import agreement_set
from citycard.interop.services.cycles import cycle_get_or_create
from citycard.platform.audit.models import AuditEntry
from tests.e2e.test_clearing_redis import redis_url  # noqa: F401 (a fixture)
from tests.e2e.test_clearing_worker import _after, _comparable, _day_of_roaming
from tests.workers import celery_worker, kill_group

pytestmark = [pytest.mark.worker, pytest.mark.slow]

FAST = {
    "CITYCARD_BROKER_VISIBILITY_TIMEOUT_S": "8",
    "CITYCARD_CLEARING_PAUSE_S": "300",  # held until the kill
    "CITYCARD_CLEARING_RESUME_AFTER_S": "5",
    "CITYCARD_CLEARING_RESUME_EVERY_S": "2",
    "CITYCARD_TERMINAL_VERIFY_EVERY_S": "3600",  # beat's other work out of the way
}
# The state a cycle is in while each step (``validate_issuer``: one issuer's validation task) is held open.
HELD_IN = {
    "close": "open",
    "validate_issuer": "closed",
    "validate": "closed",
    "net": "validated",
    "settle": "netted",
}
CASES = [
    *[("default", step) for step in HELD_IN],
    ("redis", "validate_issuer"),
    ("redis", "settle"),
    ("filesystem", "validate"),
    ("filesystem", "settle"),
]
# gba on dates no other test clears (this test commits what it writes); card serials no other test uses.
REFERENCE_DAY = dt.date(2025, 4, 1)
DAYS = {case: REFERENCE_DAY + dt.timedelta(days=1 + i) for i, case in enumerate(CASES)}


@dataclass
class Broker:
    env: dict[str, str]  # the workers' environment
    send: Callable[[list], None]  # sends cycle_process with these arguments
    sweep: bool  # the restarted worker runs beat (the broker loses a task whose worker died)


@pytest.fixture(scope="module")
def reference(django_db_setup, django_db_blocker):
    """The reference day cleared undisturbed (the same task, in this process)."""
    with django_db_blocker.unblock():
        agreement_set(
            network_code="gba",
            service="transit",
            valid_from=dt.date(2020, 1, 1),
            issuer_fee_bps=30,
            network_fee_bps=5,
            actor="test",
        )
        _day_of_roaming(REFERENCE_DAY, 11_000)
        summary = tasks.cycle_process.run("gba", "transit", REFERENCE_DAY.isoformat(), _after(REFERENCE_DAY))
    assert summary["state"] == "settled" and summary["rejected_by_reason"] == {"tac_invalid": 1}
    return summary


def _broker(kind: str, request) -> Broker:
    if kind == "default":
        if settings.EMBEDDED_BROKER_DIR is None:
            pytest.skip("redis-server is not installed: the default broker is the filesystem one")
        return Broker(env={}, send=lambda args: tasks.cycle_process.apply_async(args), sweep=False)
    if kind == "redis":
        url = request.getfixturevalue("redis_url")
        client = Celery("redis-client", broker=url, backend=url)
        env = {"CELERY_BROKER_URL": url, "CELERY_RESULT_BACKEND": url}
        return Broker(
            env=env, send=lambda args: client.send_task(tasks.cycle_process.name, args=args), sweep=False
        )
    queue = settings.BROKER_DIR / "queue"
    shutil.rmtree(queue, ignore_errors=True)  # nothing an earlier run left
    queue.mkdir(parents=True)
    client = Celery("filesystem-client", broker="filesystem://")
    client.conf.broker_transport_options = {
        "data_folder_in": str(queue),
        "data_folder_out": str(queue),
        "control_folder": str(settings.BROKER_DIR / "control"),
    }
    env = {"CELERY_BROKER_URL": "filesystem://"}
    return Broker(
        env=env, send=lambda args: client.send_task(tasks.cycle_process.name, args=args), sweep=True
    )


def _wait(what: str, done: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.5)


def _held_open(cycle: ClearingCycle, state: str) -> bool:
    """The step is paused inside its transaction: a session of the worker idle in a transaction."""
    cycle.refresh_from_db()
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND state = 'idle in transaction' AND now() - state_change > interval '1 second'"
        )
        return cycle.state == state and cur.fetchone()[0] > 0


@pytest.mark.parametrize(("kind", "held"), CASES, ids=[f"{k}-{h}" for k, h in CASES])
def test_worker_killed_while_a_step_is_held_open_and_the_cycle_settles_by_itself(
    committed_db, reference, kind, held, request, tmp_path
):
    broker = _broker(kind, request)
    day = DAYS[(kind, held)]
    _day_of_roaming(day, 11_100 + 100 * CASES.index((kind, held)))
    cycle = cycle_get_or_create(network_code="gba", service="transit", business_date=day)
    name = f"heal-{kind}-{held}"

    with celery_worker(
        name=name, extra_env={**FAST, **broker.env, "CITYCARD_CLEARING_PAUSE_AT": held}
    ) as first:
        broker.send(["gba", "transit", day.isoformat(), _after(day)])
        _wait(f"{held} held open", lambda: _held_open(cycle, HELD_IN[held]), 90)
        kill_group(first)
    cycle.refresh_from_db()
    assert cycle.state == HELD_IN[held]  # the killed step left nothing behind
    if held in ("close", "validate_issuer"):
        assert not IssuerValidation.objects.filter(cycle=cycle).exists()

    beat = str(tmp_path / "beat-schedule") if broker.sweep else None
    with celery_worker(name=f"{name}-2", extra_env={**FAST, **broker.env}, beat_schedule=beat):
        _wait("the cycle settled", lambda: ClearingCycle.objects.get(pk=cycle.pk).state == "settled", 150)

    cycle.refresh_from_db()
    summary = cycle_summary(cycle=cycle)
    assert _comparable(summary) == _comparable(reference)
    assert sum(p["net_fen"] for p in summary["positions"]) == 0
    assert cycle.journals.count() == 2  # positions and settlement, each posted once
    resumed = AuditEntry.objects.filter(action="interop.cycle_resume", object_id=cycle.label)
    # Redelivery alone (no beat ran), or the sweep (the filesystem broker lost the task).
    assert resumed.exists() == broker.sweep
