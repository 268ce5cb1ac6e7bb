"""PgBouncer in transaction mode in front of the test session's PostgreSQL, for end-to-end tests whose web
and worker processes go through it (tests/e2e/test_pgbouncer.py). A plugin of the whole suite
(tests/conftest.py), as tests/pcsc.py is for pcscd.

Each test gets a pgbouncer of its own on a free port (its statistics start at zero), with a small pool so
that clients of several tenants take turns on the same server connections. The server side logs in as a
role of its own, ``citycard_pooled``, whose default ``search_path`` names a schema that does not exist: a
statement that does not carry its own schema (one relying on a ``SET`` some earlier client left on the
server connection, or on none) fails instead of running in ``public`` or in another tenant's schema.
Without the pgbouncer program the tests are skipped with a message saying what to install.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg2 import sql

POOLED_ROLE = "citycard_pooled"
NO_SCHEMA = "citycard_no_schema_selected"  # never created


def _server_role(cur, database: str) -> None:
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [POOLED_ROLE])
    if cur.fetchone() is None:
        # Superuser only in the tests' own server: the tables belong to the session's user.
        cur.execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER").format(sql.Identifier(POOLED_ROLE)))
    cur.execute(
        sql.SQL("ALTER ROLE {} IN DATABASE {} SET search_path = {}").format(
            sql.Identifier(POOLED_ROLE), sql.Identifier(database), sql.Identifier(NO_SCHEMA)
        )
    )


@contextlib.contextmanager
def pgbouncer_started(*, pool_size: int = 2) -> Iterator:
    """A running PgBouncer (citycard.platform.pgbouncer.PgBouncer) in front of the test database's server,
    transaction pooling, at most ``pool_size`` server connections, for the block (needs ``committed_db``)."""
    from django.db import connection

    from citycard.platform import pgbouncer as bouncer

    if bouncer.program() is None:
        pytest.skip("the PgBouncer tests need pgbouncer (apt-get install pgbouncer)")
    params = connection.get_connection_params()
    with connection.cursor() as cur:
        _server_role(cur, connection.settings_dict["NAME"])
    # Its own directory right under /tmp: as root, pgbouncer runs as another user, who cannot enter pytest's.
    directory = Path(tempfile.mkdtemp(prefix="citycard-pgbouncer-"))
    running = bouncer.PgBouncer(
        directory=directory,
        server_host=params.get("host") or "localhost",
        server_port=int(params.get("port") or 5432),
        server_user=POOLED_ROLE,
        pool_size=pool_size,
    )
    try:
        with running:
            yield running
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def pgbouncer(committed_db):
    """PgBouncer in front of the test database, two server connections at most; stopped after the test."""
    with pgbouncer_started(pool_size=2) as running:
        yield running
