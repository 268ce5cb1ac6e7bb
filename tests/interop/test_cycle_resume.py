"""The resume sweep's choice of cycles (``cycles_resume_claim``): cycles left closed, validated or netted
past the age by the clock, each claimed once per age, audited and logged; open, settled and locked cycles
left alone. Workers killed at every step and finished by the sweep: tests/e2e/test_clearing_self_healing.py."""

from __future__ import annotations

import datetime as dt
import logging

import psycopg2
import pytest
from django.db import connection
from django.utils import timezone

from citycard.interop.models import ClearingCycle, CycleState
from citycard.interop.services.agreements import agreement_set
from citycard.interop.services.cycles import (
    cycle_close,
    cycle_get_or_create,
    cycle_run,
    cycle_validate,
    cycles_resume_claim,
)
from citycard.platform.audit.models import AuditEntry

from .conftest import DAY, at, record

AGE = dt.timedelta(minutes=15)
NEXT = DAY + dt.timedelta(days=1)


def _claimed(now: dt.datetime) -> dict[str, ClearingCycle]:
    # Only this test's cycles: the session's committed tests may have left others in the database.
    return {c.label: c for c in cycles_resume_claim(older_than=AGE, now=now)}


@pytest.mark.django_db
def test_a_cycle_left_closed_past_the_age_is_claimed_once_per_age_audited_and_logged(
    yrd_transit, send, collect, caplog
):
    send("jiaxing", [record(acquirer="jiaxing", issuer="hangzhou", issuer_division="330100")])
    collect("jiaxing")
    cycle = cycle_close(
        cycle=cycle_get_or_create(network_code="yrd", service="transit", business_date=DAY), now=at(NEXT, 5)
    )
    label = cycle.label
    moved = ClearingCycle.objects.get(pk=cycle.pk).progressed_at
    assert moved is not None and abs(timezone.now() - moved) < dt.timedelta(minutes=1)  # the clock, not --now

    assert label not in _claimed(moved + AGE - dt.timedelta(seconds=1))
    later = moved + AGE + dt.timedelta(seconds=60)
    with caplog.at_level(logging.WARNING, logger="citycard.interop.services.cycles"):
        claimed = _claimed(later)
    assert claimed[label].resumes == 1 and claimed[label].resumed_at == later
    assert f"clearing: resuming cycle {label}, closed for 960 s since its last step (resume 1)" in caplog.text
    entry = AuditEntry.objects.filter(action="interop.cycle_resume", object_id=label).get()
    assert entry.payload == '{"idle_s":960,"resumes":1,"state":"closed"}'
    # Claimed: left alone for another age (its processing was sent), then claimed again.
    assert label not in _claimed(later + AGE - dt.timedelta(seconds=1))
    assert _claimed(later + AGE + dt.timedelta(seconds=1))[label].resumes == 2

    # A step moving it on starts the age again from the step.
    cycle = cycle_validate(cycle=cycle, now=at(NEXT, 5))
    stepped = ClearingCycle.objects.get(pk=cycle.pk).progressed_at
    assert label not in _claimed(stepped + AGE - dt.timedelta(seconds=1))
    assert ClearingCycle.objects.get(pk=cycle.pk).state == CycleState.VALIDATED


@pytest.mark.django_db
def test_open_and_settled_cycles_are_not_the_sweeps(yrd_transit, send, collect):
    send("jiaxing", [record(acquirer="jiaxing", issuer="hangzhou", issuer_division="330100")])
    collect("jiaxing")
    settled = cycle_run(
        cycle=cycle_get_or_create(network_code="yrd", service="transit", business_date=DAY), now=at(NEXT, 5)
    )
    open_past_cut_off = cycle_get_or_create(network_code="yrd", service="transit", business_date=NEXT)
    assert settled.state == CycleState.SETTLED and open_past_cut_off.state == CycleState.OPEN
    claimed = _claimed(timezone.now() + dt.timedelta(days=365))
    assert settled.label not in claimed and open_past_cut_off.label not in claimed


def test_a_cycle_whose_row_is_locked_by_a_running_step_is_skipped(committed_db):
    """A step in progress holds the cycle row (FOR UPDATE; an issuer's validation FOR SHARE): the sweep
    skips the cycle rather than wait for it or send it again while it runs."""
    agreement_set(
        network_code="gba",
        service="transit",
        valid_from=dt.date(2020, 1, 1),
        issuer_fee_bps=30,
        network_fee_bps=5,
        actor="test",
    )
    day = dt.date(2025, 5, 1)  # gba on a date no other test clears: this test commits
    cycle = cycle_close(
        cycle=cycle_get_or_create(network_code="gba", service="transit", business_date=day),
        now=at(day, 5) + dt.timedelta(days=1),
    )
    label, far = cycle.label, timezone.now() + dt.timedelta(days=365)
    db = connection.settings_dict
    other = psycopg2.connect(
        dbname=db["NAME"], user=db["USER"], host=db["HOST"] or None, port=db["PORT"] or None
    )
    try:
        for lock in ("FOR UPDATE", "FOR SHARE"):
            with other.cursor() as cur:
                cur.execute(f"SELECT 1 FROM interop_clearingcycle WHERE id = %s {lock}", [cycle.pk])
                assert label not in _claimed(far)
            other.rollback()
        assert _claimed(far)[label].resumes == 1  # released: claimed
    finally:
        other.close()
        cycle_run(cycle=cycle, now=at(day, 5) + dt.timedelta(days=1))  # not left for another test's sweep
