"""docs/cli.md: every command and sub-command is in its table and has an example; every example parses with
its command's parser; and the examples run, in order, on a fresh database (tests/platform/cli_docs_run.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid

import pytest
from django.core.management import get_commands, load_command_class

from tests.platform.cli_docs_run import DOC, NOT_RUN, ROOT, examples, words


@pytest.mark.parametrize("line", examples())
def test_the_example_parses(line):
    program, *args = words(line)
    if program == "citycard-terminal":
        from citycard.terminal_kit.__main__ import parser_build

        parser_build().parse_args(args)  # exits 2, naming what does not parse
        return
    name, *args = args
    command = load_command_class(get_commands()[name], name)
    command.create_parser("citycard", name).parse_args(args)  # a CommandError names what does not parse


def without_tenant(line: str) -> str:
    return re.sub(r"\s--tenant\s+\S+", "", line) + " "


def test_every_project_command_and_sub_command_has_an_example():
    from .test_cli_parsers import leaves, parser_of, project_commands

    lines = [without_tenant(line) for line in examples()]
    missing = []
    for app, name in project_commands():
        parser = parser_of(app, name)
        for each in [parser, *leaves(parser)]:
            if not any(line.startswith(each.prog + " ") for line in lines):
                missing.append(each.prog)
    assert missing == []


def test_every_project_command_and_terminal_sub_command_is_in_the_table():
    from citycard.terminal_kit.__main__ import parser_build

    from .test_cli_parsers import project_commands

    table = "\n".join(
        line for line in DOC.read_text(encoding="utf-8").splitlines() if line.startswith("| `citycard")
    )
    missing = [name for _, name in project_commands() if f"`citycard {name}" not in table]
    terminal = next(line for line in table.splitlines() if line.startswith("| `citycard-terminal"))
    sub = next(a for a in parser_build()._actions if a.dest == "command")
    missing += [f"citycard-terminal {name}" for name in sub.choices if name not in terminal]
    assert missing == []
    assert [line for line in examples() if line.startswith("citycard-terminal ") and "simulate" in line]


def test_only_examples_that_cannot_run_here_are_marked_not_run():
    marked = [NOT_RUN.search(line).group(1) for line in examples() if NOT_RUN.search(line)]
    assert len(marked) <= 6, marked  # serving processes, the demo, ids only a previous run prints


def test_the_examples_run_in_order_on_a_fresh_database(tmp_path, django_db_setup):
    """Every example exits 0 (or the code its ``# exit N`` says) on a database of its own, created by
    `citycard migrate`, the first example, and dropped afterwards."""
    from django.conf import settings

    if os.environ.get("DATABASE_URL"):
        pytest.skip("runs on the embedded PostgreSQL (a database of its own next to the test database)")
    work = tmp_path / "work"
    shutil.copytree(ROOT / "docs" / "examples", work)
    out = tmp_path / "results.json"
    env = {
        **os.environ,
        "CITYCARD_DATA_DIR": str(settings.DATA_DIR),
        "CITYCARD_DB_NAME": f"citycard_docs_{uuid.uuid4().hex[:8]}",
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.platform.cli_docs_run", str(out)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.exists(), done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert [r["line"] for r in results] == examples()
    failed = [
        f"{r['line']}\n  exit {r['code']} (expected {r['expected']})\n  {r['stderr'].strip()[-1500:]}"
        f"\n  {r['stdout'].strip()[-500:]}"
        for r in results
        if r["ran"] and r["code"] != r["expected"]
    ]
    assert not failed, "\n".join(failed)
    # What the examples produced: the cards import wrote its list, the day of roaming was cleared.
    assert (work / "employer.cards.csv").exists() and (work / "hz-bus-0001" / "taps.sqlite").exists()
    report = next(r for r in results if r["line"].startswith("citycard clearing report"))
    assert "jiaxing" in report["stdout"]
