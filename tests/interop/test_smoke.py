from __future__ import annotations

import datetime as dt

import pytest

from citycard.interop.models import ClearingRecord, NetPosition
from citycard.interop.services.cycles import cycle_get_or_create, cycle_run

from .conftest import DAY, at, record

pytestmark = pytest.mark.django_db


def test_one_cycle_end_to_end(yrd_transit, send, collect):
    send(
        "jiaxing",
        [record(acquirer="jiaxing", issuer="hangzhou", issuer_division="330100", serial=i) for i in range(3)],
    )
    send(
        "hangzhou",
        [record(acquirer="hangzhou", issuer="jiaxing", issuer_division="330400", serial=9, amount=300)],
    )
    assert collect("jiaxing") == {"collected": 1, "refused": 0}
    assert collect("hangzhou") == {"collected": 1, "refused": 0}
    cycle = cycle_get_or_create(network_code="yrd", service="transit", business_date=DAY)
    cycle = cycle_run(cycle=cycle, now=at(DAY + dt.timedelta(days=1), 5))
    assert cycle.state == "settled"
    assert ClearingRecord.objects.filter(cycle=cycle).valid().count() == 4
    nets = dict(NetPosition.objects.filter(cycle=cycle).values_list("participant", "net_fen"))
    assert sum(nets.values()) == 0
    print(nets)
