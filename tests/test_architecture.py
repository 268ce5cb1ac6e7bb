"""The import contracts of pyproject.toml ([tool.importlinter]) hold, and they do bite."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        [str(exe), "--no-cache"],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"},
        timeout=300,
    )


def test_import_contracts_hold():
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_forbidden_import_is_caught(tmp_path):
    shutil.copytree(ROOT / "citycard", tmp_path / "citycard", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    (tmp_path / "citycard" / "terminal_kit" / "leak.py").write_text("from citycard.platform import models\n")
    (tmp_path / "citycard" / "platform" / "leak.py").write_text("import citycard.tenants\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    assert "citycard.terminal_kit.leak -> citycard.platform" in result.stdout
    assert "citycard.platform.leak -> citycard.tenants" in result.stdout
