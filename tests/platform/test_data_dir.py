"""The commands run after `make demo` in the checkout find the demo's database without any variable set."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from citycard.platform.embedded_pg import DEMO_DATA_DIR


def db_status(cwd: Path, **env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("CITYCARD_DATA_DIR", "DATABASE_URL")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "citycard.platform.cli",
            "--lang",
            "en",
            "db",
            "status",
        ],  # written against English
        env={**clean, "XDG_DATA_HOME": str(cwd / "xdg"), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_the_cli_uses_make_demos_directory_when_run_in_the_checkout(tmp_path):
    demo = tmp_path / ".citycard" / "demo"
    demo.mkdir(parents=True)
    out = db_status(tmp_path)
    assert out[0] == f"data directory: {demo} (make demo's, found in the current directory)"
    assert out[1] == f"database: citycard on the embedded PostgreSQL, stopped in {demo / 'pg'}"


def test_elsewhere_the_default_and_the_variable_are_used_and_said(tmp_path):
    assert db_status(tmp_path)[0] == f"data directory: {tmp_path / 'xdg' / 'citycard'} (the default)"
    chosen = tmp_path / "mine"
    (tmp_path / ".citycard" / "demo").mkdir(parents=True)
    assert (
        db_status(tmp_path, CITYCARD_DATA_DIR=str(chosen))[0]
        == f"data directory: {chosen} (CITYCARD_DATA_DIR)"
    )


def test_the_makefile_and_the_cli_agree_on_the_demo_directory():
    root = Path(__file__).resolve().parents[2]
    assert f"CITYCARD_DATA_DIR ?= $(CURDIR)/{DEMO_DATA_DIR}" in (root / "Makefile").read_text()
