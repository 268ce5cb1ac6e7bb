"""Clearing on real Celery workers: a worker killed (SIGKILL) in the middle of a step leaves nothing
behind; running the cycle again gives exactly the results of a run that was never interrupted."""

from __future__ import annotations

import datetime as dt
import time

import psutil
import pytest

from citycard.interop import tasks
from citycard.interop.models import ClearingCycle, IssuerValidation
from citycard.interop.selectors import cycle_summary
from citycard.interop.services.agreements import agreement_set
from citycard.interop.services.messages import outbox_collect
from citycard.platform.models import Tenant
from tests.interop.conftest import at, cards_known, record
from tests.workers import celery_worker

pytestmark = [pytest.mark.worker, pytest.mark.slow]

# gba on dates no other test clears: this test commits what it writes.
D1, D2 = dt.date(2025, 3, 2), dt.date(2025, 3, 3)


def _day_of_roaming(day: dt.date, base: int) -> None:
    from django_tenants.utils import tenant_context

    from citycard.tenants.exchange.services import outbox_put_clearing_records

    dongguan, shenzhen = Tenant.objects.get(code="dongguan"), Tenant.objects.get(code="shenzhen")
    to_dg = [
        record(
            acquirer="shenzhen",
            issuer="dongguan",
            issuer_division="441900",
            serial=base + i,
            counter=1,
            amount=200 + 10 * i,
            when=at(day, 8, i),
            network="gba",
        )
        for i in range(6)
    ]
    to_dg.append(
        record(
            acquirer="shenzhen",
            issuer="dongguan",
            issuer_division="441900",
            serial=base + 90,
            when=at(day, 9),
            network="gba",
            bad_tac=True,
        )
    )
    to_sz = [
        record(
            acquirer="dongguan",
            issuer="shenzhen",
            issuer_division="440300",
            serial=base + 50 + i,
            counter=1,
            amount=350,
            when=at(day, 10, i),
            network="gba",
        )
        for i in range(3)
    ]
    cards_known(dongguan, [r["card_no"] for r in to_dg])
    cards_known(shenzhen, [r["card_no"] for r in to_sz])
    with tenant_context(shenzhen):
        outbox_put_clearing_records(to_dg, "test", now=at(day, 11))
    with tenant_context(dongguan):
        outbox_put_clearing_records(to_sz, "test", now=at(day, 11))
    outbox_collect(tenant=shenzhen, now=at(day, 12))
    outbox_collect(tenant=dongguan, now=at(day, 12))


def _comparable(summary: dict) -> dict:
    return {k: summary[k] for k in ("state", "records", "rejected_by_reason", "matrix", "positions")} | {
        "instructions": [{k: v for k, v in i.items() if k != "value_date"} for i in summary["instructions"]]
    }


def _kill(proc) -> None:
    parent = psutil.Process(proc.pid)
    for child in parent.children(recursive=True):
        child.kill()
    parent.kill()
    proc.wait(10)


STEP_ORDER = ["close", "validate", "net", "settle"]
KILL_DAYS = {
    "close": dt.date(2025, 3, 4),
    "validate": D2,
    "net": dt.date(2025, 3, 5),
    "settle": dt.date(2025, 3, 6),
}


@pytest.fixture(scope="module")
def reference(django_db_setup, django_db_blocker):
    """D1 cleared undisturbed on one worker: what every interrupted cycle must end up equal to."""
    with django_db_blocker.unblock():
        agreement_set(
            network_code="gba",
            service="transit",
            valid_from=dt.date(2020, 1, 1),
            issuer_fee_bps=30,
            network_fee_bps=5,
            actor="test",
        )
        _day_of_roaming(D1, 7000)
        with celery_worker(name="clr-a"):
            summary = tasks.cycle_process.delay("gba", "transit", D1.isoformat(), _after(D1)).get(timeout=120)
    assert summary["state"] == "settled" and summary["rejected_by_reason"] == {"tac_invalid": 1}
    return summary


def _after(day: dt.date) -> str:
    return at(day + dt.timedelta(days=1), 5).isoformat()


@pytest.mark.parametrize("kill_at", STEP_ORDER)
def test_worker_killed_mid_step_then_resumed_gives_identical_results(committed_db, reference, kill_at):
    day = KILL_DAYS[kill_at]
    _day_of_roaming(day, 8000 + 100 * STEP_ORDER.index(kill_at))
    before = STEP_ORDER[: STEP_ORDER.index(kill_at)]
    # Run the steps before, then kill the worker while ``kill_at`` is held open before its commit.
    with celery_worker(name=f"clr-{kill_at}", extra_env={"CITYCARD_CLEARING_PAUSE_AT": kill_at}) as proc:
        for step in before:
            tasks.cycle_step.delay("gba", "transit", day.isoformat(), step, _after(day)).get(timeout=60)
        tasks.cycle_step.delay("gba", "transit", day.isoformat(), kill_at, _after(day))
        time.sleep(4)
        _kill(proc)
    cycle = ClearingCycle.objects.get(agreement__network__code="gba", business_date=day)
    expected_state = {"close": "open", "validate": "closed", "net": "validated", "settle": "netted"}[kill_at]
    assert cycle.state == expected_state  # the killed step left nothing behind
    assert cycle.journals.count() == (1 if kill_at == "settle" else 0)

    with celery_worker(name=f"clr-{kill_at}-2"):
        resumed = tasks.cycle_process.delay("gba", "transit", day.isoformat(), _after(day)).get(timeout=120)
        again = tasks.cycle_process.delay("gba", "transit", day.isoformat(), _after(day)).get(timeout=120)
    assert _comparable(resumed) == _comparable(reference)
    assert again == resumed  # re-running a settled cycle changes nothing, files included
    cycle.refresh_from_db()
    assert cycle.journals.count() == 2 and cycle_summary(cycle=cycle)["files"] == resumed["files"]
    # Resumed before validation, the cycle's issuers validated in tasks of their own (the chord's header),
    # each answer kept once; validated by the killed run's predecessors, none was asked again.
    fanned_out = ["dongguan", "shenzhen"] if kill_at in ("close", "validate") else []
    assert list(IssuerValidation.objects.filter(cycle=cycle).values_list("issuer", flat=True)) == fanned_out


def test_worker_killed_inside_an_issuers_validation_task_then_resumed(committed_db, reference):
    """The fan-out: ``cycle_process`` closes the cycle and becomes a chord of per-issuer tasks; the worker
    is killed while the first issuer's task holds its transaction open. Nothing of it is kept, the cycle
    stays closed, and the cycle run again (two pool processes) ends equal to the undisturbed one."""
    day = dt.date(2025, 3, 8)
    _day_of_roaming(day, 8400)
    with celery_worker(
        name="clr-issuer", extra_env={"CITYCARD_CLEARING_PAUSE_AT": "validate_issuer"}
    ) as proc:
        tasks.cycle_process.delay("gba", "transit", day.isoformat(), _after(day))
        cycle = ClearingCycle.objects.get(agreement__network__code="gba", business_date=day)
        deadline = time.monotonic() + 60
        while cycle.state != "closed" and time.monotonic() < deadline:
            time.sleep(0.5)
            cycle.refresh_from_db()
        time.sleep(3)  # the first issuer's task is inside its transaction, paused
        _kill(proc)
    cycle.refresh_from_db()
    assert cycle.state == "closed" and not IssuerValidation.objects.filter(cycle=cycle).exists()
    with celery_worker(name="clr-issuer-2", concurrency=2):
        resumed = tasks.cycle_process.delay("gba", "transit", day.isoformat(), _after(day)).get(timeout=120)
    assert _comparable(resumed) == _comparable(reference)
    assert sorted(IssuerValidation.objects.filter(cycle=cycle).values_list("issuer", flat=True)) == [
        "dongguan",
        "shenzhen",
    ]


def test_a_cycle_without_records_settles_on_a_worker(committed_db, reference):
    """No issuer to fan out: ``cycle_process`` replaces itself with the finishing steps alone."""
    day = dt.date(2025, 3, 9)
    with celery_worker(name="clr-empty"):
        summary = tasks.cycle_process.delay("gba", "transit", day.isoformat(), _after(day)).get(timeout=120)
    assert summary["state"] == "settled" and summary["records"] == {} and summary["positions"] == []
    cycle = ClearingCycle.objects.get(agreement__network__code="gba", business_date=day)
    assert not IssuerValidation.objects.filter(cycle=cycle).exists()
