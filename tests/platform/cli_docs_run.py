"""Run the examples of docs/cli.md in order on a fresh database: ``python -m tests.platform.cli_docs_run OUT``.

Started by tests/platform/test_cli_docs.py in a directory holding a copy of docs/examples/, with
``CITYCARD_DB_NAME`` naming a database of its own on the test session's embedded PostgreSQL (created by the
first command, dropped at the end). Each example runs in this one process through the command's own entry
point (``citycard.platform.cli.main``, ``citycard.terminal_kit.__main__.main``), so a run costs one Django
start-up. A line ending in ``# not run: why`` is only parsed (test_cli_docs parses every line); one ending
in ``# exit N`` must exit N. Writes the results as JSON to OUT: one entry per example.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "cli.md"
NOT_RUN = re.compile(r"#\s*not run:\s*(.+)$")
EXIT = re.compile(r"#\s*exit\s+(\d+)\s*$")


def examples() -> list[str]:
    """Every ``citycard`` / ``citycard-terminal`` line of the console blocks of "## Examples", in order."""
    text = DOC.read_text(encoding="utf-8")
    section = re.search(r"^## Examples\n(.*?)(?=^## )", text, re.S | re.M)
    assert section, "docs/cli.md has no ## Examples section"
    lines = []
    for block in re.findall(r"```console\n(.*?)```", section.group(1), re.S):
        lines += [line for line in block.splitlines() if line.startswith(("citycard ", "citycard-terminal "))]
    return lines


def words(line: str) -> list[str]:
    """The command's words, without a trailing ``# …`` remark."""
    return shlex.split(line, comments=True)


def _run(argv: list[str]) -> int:
    if argv[0] == "citycard-terminal":
        from citycard.terminal_kit.__main__ import main as terminal_main

        return terminal_main(argv[1:])
    from citycard.platform.cli import main

    try:
        main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def run_all() -> list[dict]:
    results = []
    for line in examples():
        not_run = NOT_RUN.search(line)
        if not_run:
            results.append({"line": line, "ran": False, "why": not_run.group(1)})
            continue
        expected = int(EXIT.search(line).group(1)) if EXIT.search(line) else 0
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = _run(words(line))
            except BaseException as exc:  # a traceback is a broken example too
                import traceback

                traceback.print_exc(file=err)
                code = f"raised {type(exc).__name__}"
        results.append(
            {
                "line": line,
                "ran": True,
                "code": code,
                "expected": expected,
                "stdout": out.getvalue()[-2000:],
                "stderr": err.getvalue()[-3000:],
            }
        )
    return results


def database_drop() -> None:
    from django.db import connections

    from citycard.platform import embedded_pg

    connections.close_all()
    settings = connections.databases["default"]
    import psycopg2
    from psycopg2 import sql

    address = embedded_pg.ensure_running(settings["EMBEDDED_PGDATA"])
    conn = psycopg2.connect(dbname="postgres", user=address.user, host=address.host, port=address.port)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(settings["NAME"]))
        )
    conn.close()


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "citycard.platform.settings")
    os.environ.setdefault("CITYCARD_PASSWORD", "docs-example-password-1")  # for `citycard user create`
    # The simulator's terminals, PSAMs and card wallets in the working directory: each run starts as a new
    # installation would (the database, the master key and the broker stay in the data directory).
    os.environ["CITYCARD_SIMULATOR_DIR"] = str(Path.cwd() / "simulator")
    try:
        Path(sys.argv[1]).write_text(json.dumps(run_all(), ensure_ascii=False, indent=1))
    finally:
        import django

        django.setup()
        database_drop()
