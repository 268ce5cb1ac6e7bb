"""`citycard roaming simulate`: a network's day through real terminals, uploads, verification and clearing."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django_tenants.utils import tenant_context

DAY = dt.date(2026, 11, 21)


def simulate(*extra: str) -> str:
    out = io.StringIO()
    call_command("roaming", "simulate", "--network", "yrd", "--date", DAY.isoformat(), *extra, stdout=out)
    return out.getvalue()


def stored(code: str) -> list[tuple[str, str, int]]:
    from citycard.platform.models import Tenant
    from citycard.tenants.terminals.models import Transaction

    with tenant_context(Tenant.objects.get(code=code)):
        return list(
            Transaction.objects.filter(terminal_id=f"SIM-YRD-{code.upper()}").values_list(
                "issuer", "routing", "amount_fen"
            )
        )


@pytest.fixture
def simulator_dir(settings, tmp_path):
    settings.DATA_DIR = tmp_path  # the simulator's terminal keys, PSAMs, queues and card wallet
    return tmp_path / "simulator"


@pytest.mark.django_db
def test_a_day_of_roaming_is_stored_by_the_acquirers_and_clears_with_every_record_valid(
    yrd_transit, simulator_dir
):
    from citycard.interop.models import ClearingRecord, CycleState
    from citycard.interop.services import cycle_get

    out = simulate("--taps", "45", "--cards", "4", "--seed", "7")
    taps = {code: stored(code) for code in ("shanghai", "hangzhou", "jiaxing")}
    assert all(taps.values()), taps  # every member city's bus took visitors
    # Visitors only: a card never rides in its own city; each stored tap was routed to its issuer.
    divisions = {"shanghai": "310000", "hangzhou": "330100", "jiaxing": "330400"}
    for code, rows in taps.items():
        assert {issuer for issuer, _, _ in rows} <= set(divisions.values()) - {divisions[code]}
        assert {routing for _, routing, _ in rows} == {"roaming"}
    total = sum(len(rows) for rows in taps.values())
    assert 0 < total <= 45
    fen = sum(amount for rows in taps.values() for _, _, amount in rows)
    assert f"¥{fen / 100:,.2f}" in out and "hangzhou" in out and "jiaxing" in out
    assert "amount (yuan)" in out
    # The terminals' keys, PSAMs and queues, and the cards' counters, are kept for the next run.
    assert {p.name for p in simulator_dir.iterdir()} >= {"cards-yrd.json", "SIM-YRD-JIAXING.key.json"}

    # Clearing the day: every record reached the cycle and passes the issuers' validation (TAC, card known).
    call_command("clearing", "collect", stdout=io.StringIO())
    call_command(
        "clearing",
        "run",
        "--network",
        "yrd",
        "--service",
        "transit",
        "--date",
        DAY.isoformat(),
        stdout=io.StringIO(),
    )
    cycle = cycle_get(network_code="yrd", service="transit", business_date=DAY)
    records = ClearingRecord.objects.filter(cycle=cycle)
    assert records.count() == total
    # Validation writes only rejections: none, so every record is valid and the cycle settled.
    assert list(records.filter(status="rejected").values_list("reason", "reason_message")) == []
    cycle.refresh_from_db()
    assert cycle.state == CycleState.SETTLED


@pytest.mark.django_db
def test_running_a_day_again_is_refused_unless_again_which_adds_new_rides(yrd_transit, simulator_dir):
    simulate("--taps", "12", "--cards", "3", "--seed", "1")
    first = {code: stored(code) for code in ("shanghai", "hangzhou", "jiaxing")}
    count = sum(map(len, first.values()))
    with pytest.raises(CommandError, match=rf"already has {count} simulated taps on {DAY}: nothing done"):
        simulate("--taps", "12", "--cards", "3", "--seed", "1")
    assert {code: stored(code) for code in first} == first
    out = simulate("--taps", "12", "--cards", "3", "--seed", "1", "--again")
    assert f"added to the {count} taps earlier runs stored" in out
    again = sum(len(stored(code)) for code in first)
    assert count < again <= count + 12  # new taps: the cards' counters and terminal sequences carried on


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--network", "xyz", "--date", "2026-11-21"], "network xyz does not exist"),
        (["--network", "yrd", "--date", "21/11/2026"], "--date '21/11/2026' is not a date: give YYYY-MM-DD"),
        (["--network", "yrd", "--date", "2099-01-01"], "2099-01-01 is in the future"),
        (["--network", "yrd", "--date", "2026-11-21", "--taps", "0"], "--taps must be between 1 and 100000"),
    ],
)
def test_refusals_are_one_line_and_write_nothing(args, message, simulator_dir):
    with pytest.raises(CommandError, match=message):
        call_command("roaming", "simulate", *args, stdout=io.StringIO())
    assert stored("jiaxing") == []
