"""Two worker processes on a real Redis broker clear cycles concurrently; the same cycle sent to both at
once is still cleared exactly once (the cycle row is locked per step)."""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import subprocess
import time

import pytest
from celery import Celery

from citycard.interop.models import ClearingCycle, IssuerValidation, Journal
from citycard.interop.services.agreements import agreement_set
from tests.e2e.test_clearing_worker import _day_of_roaming
from tests.interop.conftest import at
from tests.workers import celery_worker

pytestmark = [pytest.mark.worker, pytest.mark.slow]
D3, D4 = dt.date(2025, 3, 10), dt.date(2025, 3, 11)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_url(tmp_path):
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed")
    port = _free_port()
    proc = subprocess.Popen(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


def test_two_workers_on_redis(committed_db, redis_url):
    agreement_set(
        network_code="gba",
        service="transit",
        valid_from=dt.date(2020, 1, 1),
        issuer_fee_bps=30,
        network_fee_bps=5,
        actor="test",
    )
    _day_of_roaming(D3, 9000)
    _day_of_roaming(D4, 9500)
    client = Celery("redis-client", broker=redis_url, backend=redis_url)
    env = {"CELERY_BROKER_URL": redis_url, "CELERY_RESULT_BACKEND": redis_url}
    with celery_worker(name="r1", extra_env=env), celery_worker(name="r2", extra_env=env):
        time.sleep(2)
        results = [
            client.send_task(
                "citycard.interop.tasks.cycle_process",
                args=["gba", "transit", day.isoformat(), at(day + dt.timedelta(days=1), 5).isoformat()],
            )
            for day in (D3, D3, D4, D4)
        ]
        summaries = [r.get(timeout=180) for r in results]
    assert summaries[0] == summaries[1] and summaries[2] == summaries[3]
    for day, summary in ((D3, summaries[0]), (D4, summaries[2])):
        cycle = ClearingCycle.objects.get(agreement__network__code="gba", business_date=day)
        assert cycle.state == "settled" == summary["state"]
        assert Journal.objects.filter(cycle=cycle).count() == 2  # posted once
        # The issuers validated in tasks of their own (both workers' chords), one answer kept per issuer.
        assert sorted(IssuerValidation.objects.filter(cycle=cycle).values_list("issuer", flat=True)) == [
            "dongguan",
            "shenzhen",
        ]
        assert sum(p["net_fen"] for p in summary["positions"]) == 0
