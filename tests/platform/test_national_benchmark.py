"""benchmarks/national.py at a tiny scale, so the national benchmark (and the sibling scripts' functions it
calls: tenant_create's country run, migrate's run, clearing's main) cannot rot. It runs on this session's
PostgreSQL through DATABASE_URL (its own databases, citycard_bench and citycard_bench_clearing, dropped and
re-created), so it never stops the server the tests use. Figures are printed, never asserted on."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings

from citycard.platform import embedded_pg

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _server_url() -> str:
    """This session's server (the benchmark puts its own database in the path)."""
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    address = embedded_pg.ensure_running(settings.DATA_DIR / "pg")
    return f"postgres://{address.user}@{quote(address.host, safe='')}:{address.port}/postgres"


def test_national_benchmark_runs_every_section_at_a_tiny_scale():
    env = {**os.environ, "DATABASE_URL": _server_url()}
    env.pop("CITYCARD_DB_NAME", None)
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "national.py"),
            *("--tenants", "8", "--baseline", "2", "--participants", "6", "--records", "600"),
            *("--cards", "5", "--page-runs", "1"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"^8 tenants of the country in ", out, re.M)
    assert re.search(r"time per tenant\s+first 4: median", out)
    # the 8 schemas but the 2 of the path before and the 2 of the spawned pool
    assert re.search(r"citycard migrate, pool of \d+\s+4 ", out)
    assert re.search(r"pool of \d+, workers spawned\s+2 ", out)
    assert re.search(
        r"records 600 \(valid \d+\), 6 participants, 30 matrix cells, 6 net positions, Σ net = 0", out
    )
    assert "net / GROUP BY" in out and "cycle page" in out
