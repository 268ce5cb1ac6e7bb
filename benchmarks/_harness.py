"""What the benchmark scripts share: the project on ``sys.path`` and a database of their own.

Importing this first puts the project root where the script's own folder was: ``benchmarks/graphql.py``
would otherwise shadow the ``graphql`` package graphene imports. ``run_in_own_database`` runs the script
again as a child (``--child`` + the same arguments) in a database dropped and re-created for the run, on
the embedded PostgreSQL under ``.citycard/bench`` (stopped afterwards) or on the server ``DATABASE_URL``
names, so a benchmark never touches the demo's or the tests' data.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLEARING_DB = "citycard_bench_clearing"  # what benchmarks/clearing.py leaves, benchmarks/netting.py reads
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != _HERE)]


def bench_env(database: str) -> dict[str, str]:
    """The environment of a child working in ``database``."""
    env = dict(os.environ)
    env.setdefault("CITYCARD_DATA_DIR", str(ROOT / ".citycard" / "bench"))
    if env.get("DATABASE_URL"):
        from urllib.parse import urlsplit, urlunsplit

        env["DATABASE_URL"] = urlunsplit(urlsplit(env["DATABASE_URL"])._replace(path=f"/{database}"))
    else:
        env["CITYCARD_DB_NAME"] = database
    env["DJANGO_SETTINGS_MODULE"] = "citycard.platform.settings"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def reset_database(env: dict[str, str], database: str) -> None:
    """Drop and create ``database`` on the server ``env`` points at."""
    code = (
        "import django; django.setup();\n"
        "from django.db import connection\n"
        "from psycopg2 import connect\n"
        "s = connection.settings_dict; connection.get_connection_params()\n"
        "c = connect(dbname='postgres', user=s['USER'] or None, host=s['HOST'] or None, port=s['PORT'] or None,"
        " password=s.get('PASSWORD') or None); c.autocommit = True\n"
        f"c.cursor().execute('DROP DATABASE IF EXISTS {database} WITH (FORCE)')\n"
        f"c.cursor().execute('CREATE DATABASE {database}')\n"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True)


def stop_embedded(env: dict[str, str]) -> None:
    if not os.environ.get("DATABASE_URL"):
        subprocess.run(
            [sys.executable, "-m", "citycard.platform.cli", "db", "stop"],
            env=env,
            capture_output=True,
            check=False,
        )


def run_in_own_database(
    *, script: str, database: str, argv: list[str] | None = None, fresh: bool = True
) -> None:
    """Run ``script --child <argv>`` (default: this run's arguments) in ``database``, dropped and re-created
    first unless ``fresh`` is False (a benchmark reading what another one left), then stop the embedded
    server."""
    env = bench_env(database)
    if fresh:
        reset_database(env, database)
    try:
        args = sys.argv[1:] if argv is None else argv
        subprocess.run([sys.executable, script, "--child", *args], env=env, check=True)
    finally:
        stop_embedded(env)
