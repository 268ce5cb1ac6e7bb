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


def test_a_lower_tenant_app_importing_a_higher_one_is_caught(tmp_path):
    """The tenant apps' layers (cards below accounts below … exchange): an upward import breaks them."""
    shutil.copytree(ROOT / "citycard", tmp_path / "citycard", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    tenants = tmp_path / "citycard" / "tenants"
    (tenants / "cards" / "leak.py").write_text("from citycard.tenants.accounts import services\n")
    (tenants / "fares" / "leak.py").write_text("from citycard.tenants.terminals import models\n")
    (tenants / "medical" / "leak.py").write_text("from citycard.tenants.departments import models\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    for arrow in (
        "citycard.tenants.cards.leak -> citycard.tenants.accounts",
        "citycard.tenants.fares.leak -> citycard.tenants.terminals",
        "citycard.tenants.medical.leak -> citycard.tenants.departments",
    ):
        assert arrow in result.stdout, arrow


def test_no_import_inside_a_function_of_the_tenant_apps_but_at_app_loading():
    """Imports inside functions hid the tenant apps' cycles: the only ones left are in AppConfig.ready."""
    import re

    found = []
    for path in (ROOT / "citycard" / "tenants").rglob("*.py"):
        if "migrations" in path.parts or path.name == "apps.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if re.match(r"\s+(from|import) citycard", line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert found == []
