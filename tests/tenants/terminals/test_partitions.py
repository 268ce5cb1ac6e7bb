"""Month partitions of the transactions: a tenant is created with none; a tap of a month it has none for is
accepted (its partition made on demand); the beat task makes the months ahead in every tenant."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest
from django.db import connection, connections, transaction
from django_tenants.utils import schema_context, tenant_context

from citycard.platform import services
from citycard.platform.keys import tenant_verify
from citycard.tenants.terminals.partitions import (
    forget_known,
    month_of,
    months_around,
    partition_name,
    partitions_ensure,
    partitions_existing,
)
from citycard.tenants.terminals.simulate import SimTerminal
from citycard.tenants.terminals.tasks import partitions_ensure_all

from .conftest import cards, taps_for


@pytest.mark.django_db
def test_a_new_tenant_has_no_partition_and_takes_taps_of_any_month(client, register, now):
    wuxi = services.tenant_create(code="wuxi", division_code="320200")
    this = month_of(now)
    with tenant_context(wuxi):
        assert partitions_existing() == set()
    sim = SimTerminal("WX-BUS-0001", "wuxi", route="1")
    with tenant_context(wuxi):
        register(sim)

    # Late taps of last month: the new schema has no partition for them until the upload makes it.
    late = now.replace(day=1, hour=9, minute=0, second=0) - dt.timedelta(days=1)
    taps = taps_for(sim, cards("320200", 2), late)
    response = client.post(
        "/terminal/v1/batches",
        sim.sign(sim.payload(taps, created_at=now)),
        content_type="application/json",
        HTTP_HOST="wuxi.localhost",
    )
    assert response.status_code == 200, response.content
    _signer, ack = tenant_verify(document=json.loads(response.content))
    assert (ack["accepted"], ack["rejected"]) == (2, 0)
    with tenant_context(wuxi), connection.cursor() as cur:
        assert partitions_existing() == {month_of(late)}
        cur.execute("SELECT DISTINCT tableoid::regclass::text FROM terminals_transaction")
        assert [row[0].split(".")[-1] for row in cur.fetchall()] == [partition_name(*month_of(late))]

    # The beat task: this month and the next three, in the new tenant as in every other.
    ahead = months_around(now.date())
    assert ahead[0] == this and len(ahead) == 4
    result = partitions_ensure_all()
    assert result["created"]["wuxi"] == [partition_name(*month) for month in ahead]
    assert "_template" not in result["created"]
    with tenant_context(wuxi):
        assert partitions_existing() == {*ahead, month_of(late)}
    assert partitions_ensure_all()["created"] == {}  # idempotent


def test_two_transactions_making_the_same_month_at_once_both_go_through(committed_db):
    """An upload and another (or the beat task) making the same missing month: the second waits for the
    first's lock on the parent, then finds the month made, and goes on rather than failing."""
    month = (2031, 5)
    name = partition_name(*month)
    outcome: dict[str, object] = {}

    def second() -> None:
        try:
            with schema_context("haiyan"), transaction.atomic():
                outcome["created"] = partitions_ensure([month])
                outcome["exists"] = month in partitions_existing()
        except Exception as exc:  # reported to the main thread, which asserts
            outcome["error"] = exc
        finally:
            connections.close_all()

    forget_known()
    try:
        with schema_context("haiyan"), transaction.atomic():
            assert partitions_ensure([month]) == [name]
            thread = threading.Thread(target=second)
            thread.start()
            with connection.cursor() as cur:  # until the second one waits on the parent's lock
                for _ in range(200):
                    # The activity is a snapshot per transaction unless cleared.
                    cur.execute("SELECT pg_stat_clear_snapshot()")
                    cur.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        " AND query LIKE %s",
                        [f"%{name}%"],
                    )
                    if cur.fetchone()[0]:
                        break
                    thread.join(0.05)
                else:
                    raise AssertionError(f"the second never waited on the first: {outcome}")
        thread.join(30)
        assert "error" not in outcome, outcome.get("error")
        assert outcome == {"created": [], "exists": True}
    finally:
        forget_known()
        with schema_context("haiyan"), connection.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {name}")
        connection.set_schema_to_public()
