"""`make demo ARGS=--no-serve` end to end, twice, in its own data directory and embedded PostgreSQL."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from django.conf import settings


@pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="runs the demo on its own embedded PostgreSQL")
def test_the_demo_runs_and_runs_again():
    # Under the suite's data directory, not pytest's tmp_path: the embedded server runs as its own system
    # user when the suite runs as root, and pytest keeps /tmp/pytest-of-root closed to other users.
    data_dir = settings.DATA_DIR / "e2e-demo"
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL"}}
    env["CITYCARD_DATA_DIR"] = str(data_dir)
    subprocess.run([sys.executable, "-m", "citycard.platform.cli", "db", "stop"], env=env, capture_output=True)
    shutil.rmtree(data_dir, ignore_errors=True)
    command = [sys.executable, "-m", "citycard.platform.cli", "demo", "--no-serve"]
    try:
        for run in (1, 2):
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, f"run {run}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            out = done.stdout
            assert "Terminal uploads" in out and "identical" in out and "DIFFERENT" not in out
            assert "haiyan (via jiaxing)" in out
            assert "sample query answered 200" in out and "partner key for hangzhou" in out
            assert "card query answered 200 (0 errors)" in out
            assert "clearing query answered 200 (0 errors)" in out and "net positions balanced" in out
            assert "Clearing cycle yrd-transit-" in out and "Clearing cycle gba-transit-" in out
            assert "exceptions: card_unknown 1, hotlisted 1" in out and "yrd-settlement" in out
            assert "Clearing cycle gba-medical-" in out
            assert "Clearing ran on real Celery workers" in out and "No Celery worker" not in out
    finally:
        subprocess.run(
            [sys.executable, "-m", "citycard.platform.cli", "db", "stop"], env=env, capture_output=True
        )
