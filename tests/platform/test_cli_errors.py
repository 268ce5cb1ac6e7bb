"""Every refusal of the `citycard` command is one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from django.conf import settings
from django.db import connection


def citycard(*args: str, database: str | None = None, cwd=None) -> subprocess.CompletedProcess:
    """Run `citycard ARGS` in a fresh process against the test database (or ``database``)."""
    db = settings.DATABASES["default"]
    name = database or db["NAME"]
    env = {**os.environ, "CITYCARD_DATA_DIR": str(settings.DATA_DIR)}
    if db.get("EMBEDDED_PGDATA"):
        env["CITYCARD_DB_NAME"] = name
    else:
        user, password = db.get("USER") or "", db.get("PASSWORD") or ""
        auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        env["DATABASE_URL"] = f"postgresql://{auth}{db.get('HOST') or ''}:{db.get('PORT') or 5432}/{name}"
    return subprocess.run(
        [sys.executable, "-m", "citycard.platform.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def refused(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.fixture
def empty_database(committed_db):
    name = f"citycard_empty_{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    yield name
    with connection.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_database_without_tables_says_run_migrate(empty_database):
    line = refused(citycard("tenant", "list", database=empty_database))
    assert line == "citycard tenant: the database has no tables yet: run citycard migrate"


def test_an_unknown_network_is_named(committed_db):
    """In Chinese by default, in English with --lang en (docs/cli.md, "Language")."""
    line = refused(citycard("clearing", "status", "--network", "xyz"))
    assert line.startswith("citycard clearing: 网络 xyz 不存在（现有网络：")
    line = refused(citycard("--lang", "en", "clearing", "status", "--network", "xyz"))
    assert line.startswith("citycard clearing: network xyz does not exist (networks: ")


def test_an_unknown_language_is_refused(committed_db):
    assert refused(citycard("--lang", "fr", "tenant", "list")) == (
        "citycard: --lang must be one of zh-hans, en, not 'fr'"
    )


def test_an_unknown_tenant_is_named(committed_db):
    assert refused(citycard("--lang", "en", "cards", "--tenant", "atlantis", "schemes")) == (
        "citycard cards: no tenant with code 'atlantis'"
    )


def test_a_missing_file_is_named(committed_db, tmp_path):
    missing = tmp_path / "employer.csv"
    line = refused(citycard("--lang", "en", "cards", "--tenant", "jiaxing", "import", str(missing)))
    assert line == f"citycard cards: {missing} is not a file"
    line = refused(citycard("medical", "--tenant", "shenzhen", "catalogue", "import", str(missing)))
    assert str(missing) in line


def test_a_csv_in_another_encoding_than_named_is_refused(committed_db, tmp_path):
    path = tmp_path / "employer.csv"
    path.write_bytes("name,id_number\n张一,110101199003070011\n".encode("gbk"))
    line = refused(
        citycard("--lang", "en", "cards", "--tenant", "jiaxing", "import", str(path), "--encoding", "utf-8")
    )
    assert line.startswith("citycard cards: employer.csv is not utf-8: byte ")


def test_arguments_that_do_not_parse_are_one_line_too(committed_db):
    line = refused(citycard("--lang", "en", "cards", "--tenant", "jiaxing", "import"))
    assert line == (
        "citycard cards import: the following arguments are required: file (see citycard cards import --help)"
    )
    assert refused(citycard("--lang", "en", "cards", "schemes")) == (
        "citycard cards: --tenant is required (a tenant code, e.g. --tenant jiaxing)"
    )
