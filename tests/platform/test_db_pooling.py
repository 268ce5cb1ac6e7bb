"""The database backend behind PgBouncer in transaction mode: each statement runs in the schema its own
client selected, whatever another client left on the shared server connection (citycard/platform/db/base.py).

Two Django connections through a PgBouncer with a single server connection, so every statement of either
runs on the same server process as the other's and as a third client's, which leaves a session-level
``search_path`` of the wrong tenant behind between them.
"""

from __future__ import annotations

import copy
import io
import os
import subprocess
import sys

import psycopg2
import pytest
from django.db import connection, connections, transaction

from citycard.platform.db.base import DatabaseWrapper
from citycard.platform.models import Tenant
from citycard.tenants.terminals.models import Terminal
from tests.pgbouncer import pgbouncer_started


def _through(bouncer, alias: str) -> DatabaseWrapper:
    settings_dict = copy.deepcopy(connection.settings_dict)
    settings_dict.pop("EMBEDDED_PGDATA", None)
    settings_dict.update(
        HOST="127.0.0.1", PORT=str(bouncer.port), USER="postgres", PASSWORD="", TRANSACTION_POOLING=True
    )
    settings_dict["CONN_MAX_AGE"] = 0
    settings_dict["DISABLE_SERVER_SIDE_CURSORS"] = True
    wrapper = DatabaseWrapper(settings_dict, alias)
    connections[alias] = wrapper
    return wrapper


def _schema(wrapper: DatabaseWrapper) -> tuple[str, int]:
    with wrapper.cursor() as cur:
        cur.execute("SELECT current_schema(), pg_backend_pid()")
        return cur.fetchone()


@pytest.fixture
def pooled(committed_db):
    with pgbouncer_started(pool_size=1) as bouncer:
        a, b = _through(bouncer, "pooled_a"), _through(bouncer, "pooled_b")
        poison = psycopg2.connect(bouncer.url(connection.settings_dict["NAME"]))
        poison.autocommit = True

        def poisoned(schema: str) -> None:
            with poison.cursor() as cur:
                cur.execute(f'SET search_path = "{schema}"')

        try:
            yield a, b, poisoned
        finally:
            for wrapper in (a, b):
                wrapper.close()
                del connections[wrapper.alias]
            poison.close()


def test_statements_keep_their_own_schema_on_a_shared_server_connection(pooled):
    a, b, poisoned = pooled
    hangzhou, jiaxing = Tenant.objects.get(code="hangzhou"), Tenant.objects.get(code="jiaxing")
    a.set_tenant(hangzhou)
    b.set_tenant(jiaxing)
    pids = set()
    for _ in range(3):
        poisoned("shenzhen")
        schema, pid = _schema(a)
        assert schema == "hangzhou"
        pids.add(pid)
        poisoned("shanghai")
        schema, pid = _schema(b)
        assert schema == "jiaxing"
        pids.add(pid)
    assert len(pids) == 1  # one server process served both clients and the poisoner
    # The ORM too: each sees its own tenant's terminals.
    with connection.cursor() as cur:
        expected = {}
        for code in ("hangzhou", "jiaxing"):
            cur.execute(f'SELECT count(*) FROM "{code}".terminals_terminal')
            expected[code] = cur.fetchone()[0]
    poisoned("shenzhen")
    assert Terminal.objects.using("pooled_a").count() == expected["hangzhou"]
    assert Terminal.objects.using("pooled_b").count() == expected["jiaxing"]
    # The public schema is selected as explicitly as a tenant's.
    a.set_schema_to_public()
    poisoned("shenzhen")
    assert _schema(a)[0] == "public"


def test_a_transaction_carries_its_schema_once_and_again_when_it_changes(pooled):
    a, _, poisoned = pooled
    hangzhou, jiaxing = Tenant.objects.get(code="hangzhou"), Tenant.objects.get(code="jiaxing")
    a.set_tenant(hangzhou)
    poisoned("shenzhen")
    with transaction.atomic(using="pooled_a"):
        assert _schema(a)[0] == "hangzhou"
        with a.cursor() as cur:
            cur.execute("SELECT current_schema()")  # the same transaction: no SET again
            assert cur.fetchone()[0] == "hangzhou"
        a.set_tenant(jiaxing)
        assert _schema(a)[0] == "jiaxing"
        # ROLLBACK TO SAVEPOINT undoes a SET LOCAL made after the savepoint: the next statement sets it again.
        a.set_tenant(hangzhou)
        with pytest.raises(ZeroDivisionError), transaction.atomic(using="pooled_a"):
            a.set_tenant(jiaxing)
            assert _schema(a)[0] == "jiaxing"
            1 / 0  # noqa: B018
        assert _schema(a)[0] == "jiaxing"
        # COPY and executemany in the transaction's schema.
        with a.cursor() as cur:
            cur.execute("CREATE TEMP TABLE pooled_probe (schema text) ON COMMIT DROP")
            cur.cursor.copy_expert("COPY pooled_probe FROM STDIN", io.StringIO("x\n"))
            cur.executemany("INSERT INTO pooled_probe SELECT current_schema()", [(), ()])
            cur.execute("SELECT array_agg(schema ORDER BY schema) FROM pooled_probe")
            assert cur.fetchone()[0] == ["jiaxing", "jiaxing", "x"]
    # After the commit, autocommit statements carry it again, each in a transaction of its own.
    poisoned("shenzhen")
    with a.cursor() as cur:
        cur.executemany("SELECT current_schema()", [(), ()])
    assert _schema(a)[0] == "jiaxing"


def test_settings_for_transaction_pooling():
    code = (
        "import django; django.setup(); from django.conf import settings as s; d = s.DATABASES['default'];"
        "print(d['TRANSACTION_POOLING'], d['DISABLE_SERVER_SIDE_CURSORS'], d['CONN_MAX_AGE'],"
        " d['CONN_HEALTH_CHECKS'], s.TERMINAL_PREPARED_STATEMENTS)"
    )
    env = dict(
        os.environ, DATABASE_URL="postgres://app@pgbouncer:6432/citycard", CITYCARD_DB_POOLING="transaction"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "0", "True", "False"]
    status = subprocess.run(
        [sys.executable, "-m", "citycard.platform.cli", "db", "status"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert "位于 pgbouncer:6432（DATABASE_URL），经事务连接池" in status.stdout, status
    env.pop("DATABASE_URL")
    refused = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert refused.returncode != 0 and "needs DATABASE_URL" in refused.stderr
