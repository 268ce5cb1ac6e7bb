"""Roaming taps of an upload become one signed envelope in the acquirer's outbox, in a fixed number of
queries, and clear end to end (the issuer verifies the TACs the cards computed)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tenants.utils import tenant_context

from citycard.interop.models import ClearingRecord
from citycard.interop.services.cycles import cycle_get_or_create, cycle_run
from citycard.interop.services.messages import outbox_collect
from citycard.interop.terms import agreement_business_date
from citycard.tenants.exchange.models import OutboxMessage
from citycard.tenants.terminals import checks
from citycard.tenants.terminals.ingest import batch_ingest
from citycard.tenants.terminals.simulate import SimCard, SimTerminal, card_number

from .conftest import SHANGHAI, cards_known, tac_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def register(db):
    from citycard.tenants.terminals.services import terminal_register

    def _register(sim: SimTerminal):
        return terminal_register(
            terminal_id=sim.terminal_id,
            operator="Bus Co.",
            department="transport",
            service=sim.service,
            route=sim.route,
            public_key=sim.public_key,
            actor="test",
        )

    return _register


@pytest.fixture(autouse=True)
def _routes():
    checks.route_cache_clear()
    yield
    checks.route_cache_clear()


def _batch(sim: SimTerminal, division: str, n: int, start: dt.datetime, first: int = 1) -> bytes:
    taps = []
    for i in range(n):
        when = start + dt.timedelta(seconds=i)
        tap = sim.tap(SimCard(card_number(division, first + i)), at=when)
        tap["terminal_no"] = "330400000007"
        tap["tac"] = tac_for(
            tap["card_no"], amount=200, terminal_no=tap["terminal_no"], seq=tap["terminal_seq"], when=when
        )
        taps.append(tap)
    return sim.sign(sim.payload(taps, created_at=start + dt.timedelta(seconds=n)))


def test_roaming_taps_go_to_the_outbox_in_a_fixed_number_of_queries(tenant, register, yrd_transit):
    jiaxing = tenant("jiaxing")
    sim = SimTerminal("JX-OUT-1", "jiaxing")
    # Both batches on one Beijing day (yesterday's late morning): the route cache is per Beijing day, so a
    # warm-up on another day would leave the measured batch a cold cache between 00:00 and 02:00 Beijing.
    now = (timezone.now().astimezone(SHANGHAI) - dt.timedelta(days=1)).replace(
        hour=12, minute=0, second=0, microsecond=0
    )
    with tenant_context(jiaxing):
        register(sim)
        batch_ingest(
            tenant=jiaxing, body=_batch(sim, "330100", 2, now - dt.timedelta(hours=2))
        )  # warm caches
        counts = []
        for n, first in ((3, 100), (300, 200)):
            body = _batch(sim, "330100", n, now - dt.timedelta(hours=1), first=first)
            with CaptureQueriesContext(connection) as queries:
                result = batch_ingest(tenant=jiaxing, body=body)
            assert result.accepted == n
            counts.append(len(queries.captured_queries))
        messages = list(OutboxMessage.objects.order_by("id"))
    assert counts[0] == counts[1], counts
    assert [m.record_count for m in messages] == [2, 3, 300]
    record = messages[-1].envelope["payload"]["body"]["records"][0]
    assert record["record_id"].startswith("jiaxing-") and record["terminal_no"] == "330400000007"


def test_uploaded_roaming_taps_clear_end_to_end(tenant, register, yrd_transit):
    jiaxing, hangzhou = tenant("jiaxing"), tenant("hangzhou")
    sim = SimTerminal("JX-OUT-2", "jiaxing")
    now = timezone.now().astimezone(SHANGHAI).replace(microsecond=0)
    start = now - dt.timedelta(hours=1)
    cards_known(hangzhou, [card_number("330100", 500 + i) for i in range(4)])
    with tenant_context(jiaxing):
        register(sim)
        batch_ingest(tenant=jiaxing, body=_batch(sim, "330100", 4, start, first=500))
    assert outbox_collect(tenant=jiaxing, now=now) == {"collected": 1, "refused": 0}
    day = agreement_business_date(agreement=yrd_transit, at=start)
    cycle = cycle_get_or_create(network_code="yrd", service="transit", business_date=day)
    cycle = cycle_run(cycle=cycle, now=cycle.cut_off_at + dt.timedelta(minutes=1))
    assert (
        sorted(
            ClearingRecord.objects.filter(cycle=cycle).with_status().values_list("current_status", flat=True)
        )
        == ["valid"] * 4
    )
    assert dict(cycle.positions.values_list("participant", "net_fen")) == {"hangzhou": -796, "jiaxing": 796}
