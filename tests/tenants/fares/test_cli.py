"""`citycard fares …`: quote with the trace, validate, publish, export for a terminal, GTFS."""

from __future__ import annotations

import base64
import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django_tenants.utils import tenant_context

from citycard.platform.keys import tenant_public_keys
from citycard.tenants.fares import seeds, services
from citycard.tenants.fares.models import RouteSet
from citycard.terminal_kit.fares import load_signed

# What a command or a refusal says is checked in English, the source text (the `english` fixture).
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]


def run(*args) -> str:
    out = StringIO()
    call_command("fares", *args, stdout=out)
    return out.getvalue()


def test_quote_prints_the_fare_and_the_trace(published):
    published("hangzhou", seeds.HANGZHOU)
    out = run(
        "quote",
        "--tenant",
        "hangzhou",
        "--card-category",
        "elderly",
        "--route",
        "155",
        "--at",
        "2026-11-23 08:10",
    )
    assert out.startswith("fare 100 fen (¥1.00), base 200 fen, rule hz-elderly-peak — hangzhou rules v1")
    assert "matched: hz-elderly-peak, hz-card-91; winner: hz-elderly-peak" in out
    assert "  base: product hz-bus 200 fen" in out
    off_peak = run(
        "quote",
        "--tenant",
        "tonglu",
        "--card-category",
        "elderly",
        "--route",
        "155",
        "--at",
        "2026-11-23 10:10",
    )
    assert off_peak.startswith("fare 0 fen") and "hangzhou rules v1" in off_peak
    visitor = run(
        "quote", "--tenant", "hangzhou", "--issuer", "441900", "--route", "155", "--at", "2026-11-23 10:10"
    )
    assert visitor.startswith("fare 200 fen") and "no concession" in visitor


def test_quote_errors_are_one_line(published):
    published("hangzhou", seeds.HANGZHOU)
    with pytest.raises(CommandError, match="no fare product for ferry route 1"):
        run("quote", "--tenant", "hangzhou", "--service", "ferry", "--route", "1", "--at", "2026-11-23 10:10")
    with pytest.raises(CommandError, match="not a date and time"):
        run("quote", "--tenant", "hangzhou", "--route", "1", "--at", "yesterday")
    with pytest.raises(CommandError, match="shanghai has published no fare_rules"):
        run("quote", "--tenant", "shanghai", "--route", "1")


def test_validate_publish_export(tenant, tmp_path):
    hangzhou = tenant("hangzhou")
    with tenant_context(hangzhou):
        services.fares_document_load(tenant=hangzhou, document=seeds.HANGZHOU, actor="test")
        RouteSet.objects.filter(code="hz-bus-1-499-ex315").update(ranges="315-315", excluded=["315"])
    with pytest.raises(CommandError, match="1 problem"):
        run("validate", "--tenant", "hangzhou")
    with tenant_context(hangzhou):
        RouteSet.objects.filter(code="hz-bus-1-499-ex315").update(ranges="1-499")
    assert "the rules are valid" in run("validate", "--tenant", "hangzhou")
    assert "published hangzhou fare_rules v1 (effective 2026-01-01T00:00:00+08:00" in run(
        "publish", "--tenant", "hangzhou", "--effective-from", "2026-01-01 00:00"
    )
    doc, keys = tmp_path / "rules.json", tmp_path / "keys.json"
    out = run("export", "--tenant", "tonglu", "--out", str(doc), "--keys-out", str(keys))
    assert "wrote hangzhou fare_rules v1" in out and "wrote 2 keys of tonglu's terminals" in out
    held = {k: base64.b64decode(v) for k, v in json.loads(keys.read_text()).items()}
    engine = load_signed(json.loads(doc.read_text()), keys=held, tenant="hangzhou")
    assert engine.version == 1
    # A county's terminal verifies its city's rules and its county's acknowledgements and hotlists.
    assert held == {
        **tenant_public_keys(tenant=tenant("tonglu")),
        **tenant_public_keys(tenant=hangzhou),
    }


def test_gtfs_commands(tenant, tmp_path):
    sample = Path(__file__).parent / "gtfs_sample"
    out = run("import-gtfs", "--tenant", "jiaxing", str(sample))
    assert "imported: route_sets 3, fare_products 3, leg_rules 7, transfer_rules 1" in out
    out = run("export-gtfs", "--tenant", "jiaxing", str(tmp_path))
    assert "fare_leg_rules.txt" in out and (tmp_path / "fare_transfer_rules.txt").exists()
    with pytest.raises(CommandError, match="county"):
        run("import-gtfs", "--tenant", "haiyan", str(sample))
    usd = Path(__file__).parent / "gtfs_feeds" / "usd"
    with pytest.raises(CommandError, match=r"currency USD is not the tenant's \(CNY\)"):
        run("import-gtfs", "--tenant", "jiaxing", str(usd))
    out = run("import-gtfs", "--tenant", "jiaxing", str(usd), "--rate", "usd=7.10")
    assert "note: fare_products.txt bus: 0.50 USD converted at 7.10 -> 355 fen CNY" in out
