"""`make demo ARGS=--no-serve` end to end, twice, in its own data directory and embedded PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.skipif(
    bool(os.environ.get("DATABASE_URL")), reason="runs the demo on its own embedded PostgreSQL"
)
def test_the_demo_runs_and_runs_again(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL"}}
    env["CITYCARD_DATA_DIR"] = str(tmp_path / "demo")
    command = [sys.executable, "-m", "citycard.platform.cli", "demo", "--no-serve"]
    try:
        for run in (1, 2):
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, f"run {run}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            out = done.stdout
            assert "Terminal uploads" in out and "identical" in out and "DIFFERENT" not in out
            assert "haiyan (via jiaxing)" in out
            assert "Clearing cycle yrd-transit-" in out and "Clearing cycle gba-transit-" in out
            assert "exceptions: card_unknown 1, hotlisted 1" in out and "yrd-settlement" in out
            assert "Clearing cycle gba-medical-" in out
    finally:
        subprocess.run(
            [sys.executable, "-m", "citycard.platform.cli", "db", "stop"], env=env, capture_output=True
        )
