"""Month partitions of the transactions: a tenant created today gets this Beijing month's partition only;
a tap of a month it has none for is accepted (its partition made on demand); the beat task makes the months
ahead in every tenant."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.db import connection
from django_tenants.utils import tenant_context

from citycard.platform import services
from citycard.platform.keys import tenant_verify
from citycard.tenants.terminals.partitions import (
    month_of,
    months_around,
    partition_name,
    partitions_existing,
)
from citycard.tenants.terminals.simulate import SimTerminal
from citycard.tenants.terminals.tasks import partitions_ensure_all

from .conftest import cards, taps_for

pytestmark = pytest.mark.django_db


def test_a_tenant_created_today_takes_taps_of_a_month_it_has_no_partition_for(client, register, now):
    wuxi = services.tenant_create(code="wuxi", division_code="320200")
    this = month_of(now)
    with tenant_context(wuxi):
        assert partitions_existing() == {this}
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
        assert partitions_existing() == {this, month_of(late)}
        cur.execute("SELECT DISTINCT tableoid::regclass::text FROM terminals_transaction")
        assert [row[0].split(".")[-1] for row in cur.fetchall()] == [partition_name(*month_of(late))]

    # The beat task: this month and the next three, in the new tenant as in every other.
    ahead = months_around(now.date())
    assert ahead[0] == this and len(ahead) == 4
    result = partitions_ensure_all()
    assert result["created"]["wuxi"] == [partition_name(*month) for month in ahead[1:]]
    assert "_template" not in result["created"]
    with tenant_context(wuxi):
        assert partitions_existing() == {*ahead, month_of(late)}
    assert partitions_ensure_all()["created"] == {}  # idempotent
