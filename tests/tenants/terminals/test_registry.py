"""The registry through the CLI, partitions made ahead, keyset reads."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django_tenants.utils import schema_context, tenant_context

from citycard.tenants.terminals.partitions import months_around, partition_name, partitions_existing
from citycard.tenants.terminals.selectors import card_transactions
from citycard.tenants.terminals.simulate import SimTerminal
from citycard.tenants.terminals.tasks import partitions_ensure_all

from .conftest import cards
from .test_upload import post

# What a command or a refusal says is checked in English, the source text (the `english` fixture).
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]


def run(*args) -> str:
    out = StringIO()
    call_command("terminal", *args, stdout=out)
    return out.getvalue()


def test_cli_register_rotate_suspend_list(tmp_path):
    sim = SimTerminal("JX-GATE-1", "jiaxing")
    assert "registered JX-GATE-1" in run(
        "--tenant",
        "jiaxing",
        "register",
        "JX-GATE-1",
        "--operator",
        "嘉兴轨道",
        "--department",
        "transport",
        "--service",
        "metro",
        "--location",
        "南湖站",
        "--public-key",
        sim.public_key.hex(),
    )
    with pytest.raises(CommandError, match="already registered"):
        run(
            "--tenant",
            "jiaxing",
            "register",
            "JX-GATE-1",
            "--operator",
            "x",
            "--department",
            "transport",
            "--service",
            "metro",
            "--location",
            "y",
            "--generate-key",
            str(tmp_path / "k"),
        )
    assert "JX-GATE-1:k2" in run(
        "--tenant", "jiaxing", "rotate-key", "JX-GATE-1", "--generate-key", str(tmp_path / "k2")
    )
    assert (tmp_path / "k2").stat().st_mode & 0o777 == 0o600
    run("--tenant", "jiaxing", "suspend", "JX-GATE-1", "--reason", "maintenance")
    listing = run("--tenant", "jiaxing", "list")
    assert "JX-GATE-1" in listing and "suspended" in listing and "k1 (retired)" in listing
    with schema_context("hangzhou"):
        assert "JX-GATE-1" not in run("--tenant", "hangzhou", "list")
    with pytest.raises(CommandError, match="route or a location"):
        run(
            "--tenant",
            "jiaxing",
            "register",
            "JX-2",
            "--operator",
            "x",
            "--department",
            "transport",
            "--service",
            "metro",
            "--generate-key",
            str(tmp_path / "k3"),
        )


def test_partitions_are_made_ahead_in_every_tenant():
    far = dt.date.today() + dt.timedelta(days=800)
    with schema_context("haiyan"):
        assert (far.year, far.month) not in partitions_existing()
    import citycard.tenants.terminals.tasks as tasks

    original = tasks.partitions_ahead
    tasks.partitions_ahead = lambda: original(today=far)
    try:
        result = partitions_ensure_all()
    finally:
        tasks.partitions_ahead = original
    assert result["schemas"] >= 7
    # The template is left alone: a new tenant is given this month's partition, not the template's.
    assert "_template" not in result["created"]
    for schema in ("haiyan", "shenzhen"):
        assert partition_name(far.year, far.month) in result["created"][schema]
        with schema_context(schema):
            assert set(months_around(far)) <= partitions_existing()
    connection.set_schema_to_public()


def test_card_history_newest_first_with_keyset_pages(client, tenant, register, now):
    hangzhou = tenant("hangzhou")
    sim = SimTerminal("HZ-K", "hangzhou")
    with tenant_context(hangzhou):
        register(sim)
    card = cards("330100", 1)[0]
    taps = [sim.tap(card, at=now - dt.timedelta(minutes=10 - i)) for i in range(5)]
    assert post(client, sim.sign(sim.payload(taps, created_at=now))).status_code == 200
    with tenant_context(hangzhou):
        page1 = card_transactions(card_no=card.card_no, first=2)
        page2 = card_transactions(card_no=card.card_no, after=(page1[-1].tapped_at, page1[-1].id), first=2)
        page3 = card_transactions(card_no=card.card_no, after=(page2[-1].tapped_at, page2[-1].id), first=2)
    assert [t.card_counter for t in page1 + page2 + page3] == [5, 4, 3, 2, 1]
