"""The validation and settlement steps' parallel paths on a real process pool (as benchmarks/clearing.py
runs them): ``cycle_validate(issuers_map=…)`` with each issuer validated in a child process on its own
connection, ``cycle_settle(files_map=…)`` with the reconciliation files written there. The cycle must end
exactly as one cleared in a single process."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
from urllib.parse import quote

import pytest
from django.db import connection

from citycard.interop.models import ClearingCycle, ReconciliationFile
from citycard.interop.selectors import cycle_summary
from citycard.interop.services import agreements, cycles
from tests import pool_jobs
from tests.e2e.test_clearing_worker import _after, _comparable, _day_of_roaming
from tests.interop.conftest import at
from tests.workers import worker_env

pytestmark = [pytest.mark.worker, pytest.mark.slow]

# gba on dates no other test clears: this test commits what it writes.
INLINE_DAY, POOL_DAY = dt.date(2025, 3, 14), dt.date(2025, 3, 15)


def _files(cycle: ClearingCycle) -> dict[str, tuple[str, dict]]:
    return {f.participant: (f.csv, f.totals) for f in ReconciliationFile.objects.filter(cycle=cycle)}


def test_issuers_and_files_on_a_process_pool_give_the_single_process_results(committed_db):
    agreements.agreement_set(
        network_code="gba",
        service="transit",
        valid_from=dt.date(2020, 1, 1),
        issuer_fee_bps=30,
        network_fee_bps=5,
        actor="test",
    )
    _day_of_roaming(INLINE_DAY, 9700)
    _day_of_roaming(POOL_DAY, 9800)
    inline = cycles.cycle_run(
        cycle=cycles.cycle_get_or_create(network_code="gba", service="transit", business_date=INLINE_DAY),
        now=dt.datetime.fromisoformat(_after(INLINE_DAY)),
    )

    pids: set[int] = set()

    def issuers_map(jobs):
        out = pool.map(pool_jobs.validate, jobs)
        pids.update(pid for _result, pid in out)
        return [result for result, _pid in out]

    def files_map(jobs):
        out = pool.map(pool_jobs.packed, jobs)
        pids.update(pid for _pack, pid in out)
        return [pack for pack, _pid in out]

    # The children connect straight to the test database's server: each starting (and on exit, leaving)
    # the embedded server's handle at the same moment would race on its shared list of handles.
    db = connection.settings_dict
    env = worker_env(
        {"DATABASE_URL": f"postgres://{db['USER']}@{quote(db['HOST'], safe='')}:{db['PORT']}/{db['NAME']}"}
    )
    now = at(POOL_DAY + dt.timedelta(days=1), 5)
    cycle = cycles.cycle_get_or_create(network_code="gba", service="transit", business_date=POOL_DAY)
    with multiprocessing.get_context("spawn").Pool(
        2, initializer=pool_jobs.child_init, initargs=(env,)
    ) as pool:
        cycle = cycles.cycle_close(cycle=cycle, now=now)
        cycle = cycles.cycle_validate(cycle=cycle, now=now, issuers_map=issuers_map)
        cycle = cycles.cycle_net(cycle=cycle, now=now)
        cycle = cycles.cycle_settle(cycle=cycle, now=now, files_map=files_map)
    assert pids and os.getpid() not in pids  # the jobs ran in the pool's processes
    assert cycle.state == "settled"
    assert _comparable(cycle_summary(cycle=cycle)) == _comparable(cycle_summary(cycle=inline))
    assert cycle_summary(cycle=cycle)["rejected_by_reason"] == {"tac_invalid": 1}
    # Same files but for the cycle's name and the records' ids and cards: compare totals, and that every
    # record of the cycle is listed once in its parties' files.
    pooled, single = _files(cycle), _files(inline)
    assert sorted(pooled) == sorted(single)
    for participant, (text, totals) in pooled.items():
        assert totals == single[participant][1]
        assert text.count("\n") == single[participant][0].count("\n")
        assert f"gba-transit-{POOL_DAY.isoformat()},{participant}," in text
