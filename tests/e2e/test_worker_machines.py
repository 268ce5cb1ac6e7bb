"""Workers on several machines, simulated: two worker processes, each with a data directory of its own
(``CITYCARD_DATA_DIR``: what one machine keeps on its own disk), share one Redis broker (a third "machine":
the project's embedded redis-server in a directory of its own) and one database, which they reach through
PgBouncer in transaction mode (docs/scale-out.md). Keys come from the environment as on real machines
(``CITYCARD_MASTER_KEY``, ``CITYCARD_SECRET_KEY``), never from a data directory.

Four clearing cycles of the gba network are each sent twice at once: the cycles' steps and their issuer
validations spread over both machines, each cycle is cleared exactly once (both sends answer the same
summary, one journal pair), and neither machine started a database or a broker of its own.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from celery import Celery
from django.conf import settings
from django.db import connection

from citycard.interop.models import ClearingCycle, IssuerValidation, Journal
from citycard.interop.services.agreements import agreement_set
from citycard.platform import embedded_redis, keys
from tests.e2e.test_clearing_worker import _day_of_roaming
from tests.interop.conftest import at
from tests.workers import celery_worker

pytestmark = [pytest.mark.worker, pytest.mark.slow]

# gba days no other test clears: this test commits what it writes.
DAYS = [dt.date(2025, 3, 26) + dt.timedelta(days=n) for n in range(4)]


@pytest.fixture
def broker_machine():
    if not embedded_redis.available():
        pytest.skip("redis-server is not installed")
    directory = Path("/tmp") / f"citycard-broker-{uuid.uuid4().hex[:8]}"  # a short Unix socket path
    url = embedded_redis.ensure_running(directory)
    try:
        yield url
    finally:
        embedded_redis.stop(directory)
        shutil.rmtree(directory, ignore_errors=True)


def _tasks_run(log: Path) -> Counter:
    """The tasks a worker's log says it ran (citycard.task lines: JSON, one per task)."""
    ran: Counter = Counter()
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("logger") == "citycard.task" and entry.get("outcome") in {"success", "ignored"}:
                ran[entry["task"].rsplit(".", 1)[-1]] += 1
    return ran


def test_workers_on_two_machines_share_the_broker_and_the_database(pgbouncer, broker_machine, tmp_path):
    agreement_set(
        network_code="gba",
        service="transit",
        valid_from=dt.date(2020, 1, 1),
        issuer_fee_bps=30,
        network_fee_bps=5,
        actor="test",
    )
    serial0 = int(uuid.uuid4().int % 10**7) * 100
    for n, day in enumerate(DAYS):
        _day_of_roaming(day, serial0 + 1000 * n)
    master = (settings.DATA_DIR / "master_key").read_text().strip()
    assert keys.master_keys().current_id == master.split(":")[0]
    machines = [tmp_path / "machine-1", tmp_path / "machine-2"]
    logs = [tmp_path / "worker-1.log", tmp_path / "worker-2.log"]

    def env(data_dir: Path) -> dict[str, str]:
        return {
            "CITYCARD_DATA_DIR": str(data_dir),
            "DATABASE_URL": pgbouncer.url(connection.settings_dict["NAME"]),
            "CITYCARD_DB_POOLING": "transaction",
            "CELERY_BROKER_URL": broker_machine,
            "CELERY_RESULT_BACKEND": broker_machine,
            "CITYCARD_MASTER_KEY": master,
            "CITYCARD_SECRET_KEY": settings.SECRET_KEY,
            "PROMETHEUS_MULTIPROC_DIR": str(data_dir / "metrics"),
            "CITYCARD_LOG_FORMAT": "json",
        }

    client = Celery("machines-client", broker=broker_machine, backend=broker_machine)
    with (
        open(logs[0], "w") as log1,
        open(logs[1], "w") as log2,
        celery_worker(name="m1", extra_env=env(machines[0]), stderr=log1),
        celery_worker(name="m2", extra_env=env(machines[1]), stderr=log2),
    ):
        deadline = time.monotonic() + 60
        while len(client.control.ping(timeout=1)) < 2:
            assert time.monotonic() < deadline, "the two workers did not answer a ping within 60 s"
        results = [
            client.send_task(
                "citycard.interop.tasks.cycle_process",
                args=["gba", "transit", day.isoformat(), at(day + dt.timedelta(days=1), 5).isoformat()],
            )
            for day in DAYS
            for _ in range(2)
        ]
        summaries = [r.get(timeout=300) for r in results]
    client.close()

    # Idempotent: both sends of a cycle answer the same summary; each cycle settled and posted once.
    for n, day in enumerate(DAYS):
        first, second = summaries[2 * n], summaries[2 * n + 1]
        assert first == second
        cycle = ClearingCycle.objects.get(agreement__network__code="gba", business_date=day)
        assert cycle.state == "settled" == first["state"]
        assert Journal.objects.filter(cycle=cycle).count() == 2
        assert sorted(IssuerValidation.objects.filter(cycle=cycle).values_list("issuer", flat=True)) == [
            "dongguan",
            "shenzhen",
        ]
        assert sum(p["net_fen"] for p in first["positions"]) == 0
    # Spread: each machine ran clearing tasks, issuer validations among them on both.
    ran = [_tasks_run(log) for log in logs]
    assert all(sum(r.values()) > 0 for r in ran), ran
    assert sum(r["issuer_validation"] for r in ran) >= 2 * len(DAYS), ran
    assert sum(r["cycle_process"] for r in ran) == 2 * len(DAYS), ran
    # Each machine kept its own data directory and started no database or broker of its own.
    for machine in machines:
        assert any((machine / "metrics").iterdir()), machine
        assert not (machine / "pg").exists() and not (machine / "redis").exists(), list(machine.iterdir())
    print(f"tasks per machine: {[dict(r) for r in ran]}")
