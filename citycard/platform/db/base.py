"""django-tenants' PostgreSQL backend that starts the embedded server on first connection, and that keeps
each tenant in its own schema behind a transaction-pooling PgBouncer.

A settings dict carrying ``EMBEDDED_PGDATA`` (set when DATABASE_URL is absent) connects through the
Unix socket of the server in that directory, starting it and creating the database when needed.

**Transaction pooling** (``TRANSACTION_POOLING`` in the settings dict, from ``CITYCARD_DB_POOLING=transaction``;
docs/scale-out.md, "Connection pooling"). Behind PgBouncer in transaction mode a client holds a server
connection for one transaction only: the next transaction of the same client may run on another server
connection, last used by another tenant's client. django-tenants selects the schema with a session-level
``SET search_path`` sent once per connection (TENANT_LIMIT_SET_CALLS): through such a pooler that setting
stays on whichever server connection it reached and applies to the next client that gets it, while this
client's later statements run on connections set for some other tenant. So here nothing is set for the
session: the first statement of every transaction carries its own ``SET LOCAL search_path`` in the same
query string (one round trip, one implicit or explicit transaction, so on the same server connection), which
PostgreSQL forgets at the transaction's end. In autocommit mode every statement is a transaction of its own
and carries it; inside ``atomic`` the first statement does, and a statement after the schema changed within
the transaction carries the new one. The other session state is kept out the same way: no server-side
cursors (DISABLE_SERVER_SIDE_CURSORS), no prepared statements (TERMINAL_PREPARED_STATEMENTS off; psycopg2
prepares nothing itself), advisory locks only transaction-level, temporary tables only ``ON COMMIT DELETE
ROWS`` and emptied before use, and the time zone one that PgBouncer itself tracks per client.
"""

from __future__ import annotations

import contextlib
import re

import psycopg2
import psycopg2.extensions
from django.core.exceptions import ImproperlyConfigured
from django_tenants.postgresql_backend.base import DatabaseWrapper as TenantDatabaseWrapper
from django_tenants.utils import quote_schema_name
from psycopg2 import sql

from citycard.platform import embedded_pg

_databases_checked: set[tuple[str, str]] = set()
_IDLE = psycopg2.extensions.TRANSACTION_STATUS_IDLE
# Statements PostgreSQL refuses inside a transaction block (a multi-statement string is one): sent bare.
_NO_TRANSACTION = re.compile(
    r"\s*(VACUUM|CREATE DATABASE|DROP DATABASE|ALTER SYSTEM|REINDEX|CLUSTER|(CREATE|DROP)( UNIQUE)? INDEX"
    r" CONCURRENTLY)\b",
    re.IGNORECASE,
)


def _ensure_database(address: embedded_pg.ServerAddress, name: str) -> None:
    key = (address.host, name)
    if key in _databases_checked or name == "postgres":
        return
    conn = psycopg2.connect(dbname="postgres", user=address.user, host=address.host, port=address.port)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
            if cur.fetchone() is None:
                # another process may create it first
                with contextlib.suppress(psycopg2.errors.DuplicateDatabase):
                    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        conn.close()
    _databases_checked.add(key)


class PooledCursor(psycopg2.extensions.cursor):
    """A psycopg2 cursor whose statement carries ``SET LOCAL search_path`` when it starts a transaction
    (or the schema changed within one): the schema travels with the statement, never with the session."""

    wrapper: DatabaseWrapper | None = None

    def _with_path(self, query, *, interpolated: bool):
        wrapper = self.wrapper
        if wrapper is None:
            return query
        set_path = wrapper.search_path_local()
        if self.connection.info.transaction_status == _IDLE:
            wrapper.transaction_search_path = None  # the statement starts a transaction
        if wrapper.transaction_search_path == set_path:
            return query
        query = self._text(query)
        if _NO_TRANSACTION.match(query):
            return query
        wrapper.transaction_search_path = set_path
        # With parameters psycopg2 reads % in the query as a placeholder: a schema name's own % is doubled.
        return f"{set_path.replace('%', '%%') if interpolated else set_path};\n{query}"

    def _text(self, query) -> str:
        if isinstance(query, sql.Composable):
            return query.as_string(self)
        return query.decode() if isinstance(query, bytes) else query

    def execute(self, query, vars=None):
        return super().execute(self._with_path(query, interpolated=vars is not None), vars)

    def executemany(self, query, vars_list):
        # Every execution carries the path: in autocommit mode each is a transaction of its own.
        vars_list = list(vars_list)
        if self.wrapper is not None and vars_list:
            path = self.wrapper.search_path_local()
            query = self._text(query)
            if not _NO_TRANSACTION.match(query):
                query = f"{path.replace('%', '%%')};\n{query}"
                self.wrapper.transaction_search_path = path
        return super().executemany(query, vars_list)

    def copy_expert(self, sql, file, size=8192):
        return super().copy_expert(self._with_path(sql, interpolated=False), file, size)


class DatabaseWrapper(TenantDatabaseWrapper):
    def __init__(self, *args, **kwargs):
        self.transaction_search_path: str | None = None  # the SET LOCAL sent in the current transaction
        super().__init__(*args, **kwargs)

    @property
    def transaction_pooling(self) -> bool:
        return bool(self.settings_dict.get("TRANSACTION_POOLING"))

    def get_connection_params(self):
        pgdata = self.settings_dict.get("EMBEDDED_PGDATA")
        if pgdata:
            try:
                address = embedded_pg.ensure_running(pgdata)
            except embedded_pg.EmbeddedPostgresError as exc:
                raise ImproperlyConfigured(str(exc)) from exc
            self.settings_dict["HOST"] = address.host
            self.settings_dict["PORT"] = str(address.port)
            self.settings_dict["USER"] = address.user
            name = self.settings_dict.get("NAME") or "postgres"
            _ensure_database(address, name)
        params = super().get_connection_params()
        if self.transaction_pooling:
            params["cursor_factory"] = PooledCursor
        return params

    def search_path_local(self) -> str:
        """``SET LOCAL search_path`` for the schema selected now (validated as django-tenants does)."""
        paths = self._get_cursor_search_paths()
        return "SET LOCAL search_path = " + ", ".join(quote_schema_name(s) for s in paths)

    def create_cursor(self, name=None):
        cursor = super().create_cursor(name)
        if isinstance(cursor, PooledCursor):
            cursor.wrapper = self
        return cursor

    def _handle_search_path(self, cursor=None):
        if not self.transaction_pooling:
            return super()._handle_search_path(cursor)
        # No session-level SET: each transaction's first statement carries its own (PooledCursor).
        if not self.schema_name:
            raise ImproperlyConfigured("Database schema not set. Did you forget to call set_tenant()?")
        return None

    def savepoint_rollback(self, sid):
        try:
            super().savepoint_rollback(sid)
        finally:
            # ROLLBACK TO SAVEPOINT also undoes a SET LOCAL sent after the savepoint.
            self.transaction_search_path = None

    def _close(self):
        self.transaction_search_path = None
        return super()._close()
