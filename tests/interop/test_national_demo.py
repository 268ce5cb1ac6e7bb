"""`citycard demo --national` at a test's scale (docs/clearing.md, "A national network"): 12 of the country's
cities as tenants, members of the national network tunion, a day of 2,000 roaming records sealed by the
acquirers and cleared to settlement — Σ net = 0, the matrix equal to the valid records per pair, the broken
TACs rejected — and a second run that finds the cycle settled and changes nothing."""

from __future__ import annotations

import io

import pytest
from django.db import connection
from django.utils import translation
from rich.console import Console

from citycard.interop.models import (
    BilateralPosition,
    ClearingCycle,
    CycleState,
    NetPosition,
    ReconciliationFile,
)
from citycard.interop.national import NATIONAL_NETWORK
from citycard.platform.demo import demo_national_run
from citycard.platform.models import NetworkMembership, Tenant
from tests.platform.test_cli_chinese import assert_chinese

pytestmark = pytest.mark.django_db


def _run() -> str:
    """The demo as it speaks by default: in Chinese."""
    out = io.StringIO()
    with translation.override("zh-hans"):
        demo_national_run(
            console=Console(file=out, width=200), limit=12, cities=12, records=2000, cards=20, largest=0
        )
    return out.getvalue()


def test_national_demo_builds_the_network_and_settles_its_cycle():
    said = _run()
    members = NetworkMembership.objects.filter(network__code=NATIONAL_NETWORK, left_on=None)
    codes = sorted(members.values_list("tenant__code", flat=True))
    assert len(codes) == 12 and all(code.startswith("d") for code in codes)
    assert Tenant.objects.get(code="d110000").name_zh == "北京市"

    # The day cleared (closing it opens the next day's cycle, empty).
    cycles = ClearingCycle.objects.filter(agreement__network__code=NATIONAL_NETWORK)
    cycle = cycles.get(state=CycleState.SETTLED)
    opened = cycles.count()
    positions = NetPosition.objects.filter(cycle=cycle)
    assert positions.count() == 12 and sum(p.net_fen for p in positions) == 0
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*), count(*) FILTER (WHERE status = 'rejected') FROM interop_clearingrecord"
            " WHERE cycle_id = %s",
            [cycle.pk],
        )
        total, rejected = cur.fetchone()
        cur.execute(
            "SELECT issuer, acquirer, count(*), sum(amount_fen) FROM interop_clearingrecord"
            " WHERE cycle_id = %s AND status <> 'rejected' GROUP BY 1, 2",
            [cycle.pk],
        )
        pairs = {(i, a): (n, s) for i, a, n, s in cur.fetchall()}
    assert total == 1992  # 166 per acquirer (2,000 // 12)
    assert 0 < rejected < total // 10  # the 2% broken TACs, and nothing else
    cells = {
        (c.issuer, c.acquirer): (c.records, c.amount_fen)
        for c in BilateralPosition.objects.filter(cycle=cycle)
    }
    assert cells == pairs and all(i != a for i, a in cells)
    assert ReconciliationFile.objects.filter(cycle=cycle).count() == 12
    assert f"/console/cycles/{NATIONAL_NETWORK}/transit/{cycle.business_date}/" in said
    assert_chinese(said, "新建 12 个租户", "净额合计 Σ = ¥0.00", "已结算 (settled)", "清算控制台")

    again = _run()
    assert_chinese(again, "新建 0 个租户，12 个已存在")
    assert cycles.count() == opened and cycles.get(state=CycleState.SETTLED) == cycle
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM interop_clearingrecord WHERE cycle_id = %s", [cycle.pk])
        assert cur.fetchone()[0] == total
