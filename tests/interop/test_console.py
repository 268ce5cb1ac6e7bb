"""Clearing staff's tools: the CLI, the platform admin pages, and the Celery tasks run in-process."""

from __future__ import annotations

import datetime as dt
import io
import re

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from citycard.interop import tasks
from citycard.interop.models import ClearingCycle
from citycard.platform import services as platform_services
from citycard.platform.models import Role

from .conftest import DAY, at, record

pytestmark = pytest.mark.django_db
NEXT = DAY + dt.timedelta(days=1)


def _roam(send, n=2):
    send(
        "jiaxing",
        [record(acquirer="jiaxing", issuer="hangzhou", issuer_division="330100", serial=i) for i in range(n)],
    )
    send(
        "hangzhou",
        [record(acquirer="hangzhou", issuer="jiaxing", issuer_division="330400", serial=50, amount=700)],
    )


def _cli(*args):
    out = io.StringIO()
    call_command("clearing", *args, stdout=out)
    return out.getvalue()


def test_cli_runs_a_cycle_step_by_step_and_reports(yrd_transit, send):
    _roam(send)
    common = ["--network", "yrd", "--service", "transit", "--date", DAY.isoformat()]
    assert "2 个发件箱有消息" in _cli("collect", "--now", at(DAY, 12).isoformat())
    with pytest.raises(CommandError, match="此前不能截止"):
        _cli("close", *common, "--now", at(DAY, 23).isoformat())
    later = ["--now", at(NEXT, 5).isoformat()]
    assert "closed" in _cli("close", *common, *later)
    with pytest.raises(CommandError, match="需要其状态为 validated"):
        _cli("net", *common, *later)
    _cli("validate", *common, *later)
    _cli("net", *common, *later)
    out = _cli("settle", *common, *later)
    assert "settled" in out and "净头寸" in out and "yrd-settlement" in out  # Chinese first
    status = _cli("status", *common, "--json")
    assert '"state": "settled"' in status
    report = _cli("report", *common, "--participant", "jiaxing")
    assert "# totals" in report and "# details" in report


def test_platform_admin_pages_for_clearing_staff(client, yrd_transit, send):
    _roam(send)
    tasks.cycle_process.run("yrd", "transit", DAY.isoformat(), at(NEXT, 5).isoformat())
    staff = platform_services.user_create(
        username="clr1", role=Role.CLEARING_STAFF, password="a-long-password-1"
    )
    client.force_login(staff)
    for page in (
        "clearingcycle",
        "clearingrecord",
        "bilateralposition",
        "netposition",
        "settlementinstruction",
        "dispute",
        "reconciliationfile",
        "messagerefusal",
    ):
        response = client.get(f"/admin/interop/{page}/", HTTP_HOST="localhost")
        assert response.status_code == 200, page
    cycle = ClearingCycle.objects.get(business_date=DAY)
    response = client.get(f"/admin/interop/clearingcycle/{cycle.pk}/change/", HTTP_HOST="localhost")
    assert response.status_code == 200 and b"yrd-settlement" in response.content
    # A cell of the matrix (a view over its rows) opens by its id, read through its row.
    cell = cycle.bilateral.order_by("issuer", "acquirer").first()
    response = client.get(f"/admin/interop/bilateralposition/{cell.pk}/change/", HTTP_HOST="localhost")
    assert response.status_code == 200
    assert cell.issuer.encode() in response.content and str(cell.amount_fen).encode() in response.content
    response = client.get(
        f"/admin/interop/bilateralposition/?cycle__id__exact={cycle.pk}", HTTP_HOST="localhost"
    )
    assert response.status_code == 200 and cell.acquirer.encode() in response.content
    missing = client.get(f"/admin/interop/bilateralposition/{cell.pk + 99}/change/", HTTP_HOST="localhost")
    assert missing.status_code == 302  # no such cell: back to the list, as for any missing object


def test_beat_task_closes_due_cycles_through_to_settlement(yrd_transit, send):
    _roam(send)
    assert tasks.cycles_close_due.run(at(DAY, 23).isoformat()) == []  # before the cut-off: nothing
    done = tasks.cycles_close_due.run(at(NEXT, 4, 15).isoformat())
    assert done == ["yrd-transit-2026-11-21"]
    assert ClearingCycle.objects.get(business_date=DAY).state == "settled"
    assert ClearingCycle.objects.get(business_date=NEXT).state == "open"
    summary = tasks.cycle_process.run("yrd", "transit", DAY.isoformat(), at(NEXT, 6).isoformat())
    assert sum(p["net_fen"] for p in summary["positions"]) == 0 and summary["state"] == "settled"


@pytest.mark.usefixtures("english")
def test_clearing_status_and_report_never_write(yrd_transit, send, english):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    _roam(send)
    common = ["--network", "yrd", "--service", "transit"]
    with CaptureQueriesContext(connection) as queries:
        assert "no yrd transit cycles yet" in _cli("status", *common)
        with pytest.raises(CommandError, match=f"no yrd transit cycle for {DAY} yet"):
            _cli("status", *common, "--date", DAY.isoformat())
        with pytest.raises(CommandError, match=f"no yrd transit cycle for {DAY} yet"):
            _cli("report", *common, "--date", DAY.isoformat())
    writes = [
        q["sql"] for q in queries if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))
    ]
    assert writes == [] and not ClearingCycle.objects.exists()

    tasks.cycle_process.run("yrd", "transit", DAY.isoformat(), at(NEXT, 5).isoformat())
    with CaptureQueriesContext(connection) as queries:
        listing = _cli("status", *common, "--now", at(DAY, 12).isoformat())
        one = _cli("status", *common, "--date", DAY.isoformat())
        later = _cli("status", *common, "--now", at(DAY + dt.timedelta(days=9), 12).isoformat())
    assert (
        re.search(rf"▶ +│ {DAY.isoformat()} +│ Settled \(settled\)", listing) and "Settled (settled)" in one
    )
    assert f"no cycle for today ({DAY + dt.timedelta(days=9)}) yet" in later
    assert not [q for q in queries if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]


@pytest.mark.usefixtures("english")
def test_an_unknown_network_is_named_as_such(yrd_transit):
    with pytest.raises(CommandError, match="network xyz does not exist"):
        _cli("status", "--network", "xyz")
    with pytest.raises(CommandError, match="network gba has no transit agreement"):
        _cli("status", "--network", "gba", "--service", "transit")
