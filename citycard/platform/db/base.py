"""django-tenants' PostgreSQL backend that starts the embedded server on first connection.

A settings dict carrying ``EMBEDDED_PGDATA`` (set when DATABASE_URL is absent) connects through the
Unix socket of the server in that directory, starting it and creating the database when needed.
"""

from __future__ import annotations

import contextlib

import psycopg2
from django.core.exceptions import ImproperlyConfigured
from django_tenants.postgresql_backend.base import DatabaseWrapper as TenantDatabaseWrapper
from psycopg2 import sql

from citycard.platform import embedded_pg

_databases_checked: set[tuple[str, str]] = set()


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


class DatabaseWrapper(TenantDatabaseWrapper):
    def get_connection_params(self):
        pgdata = self.settings_dict.get("EMBEDDED_PGDATA")
        if not pgdata:
            return super().get_connection_params()
        try:
            address = embedded_pg.ensure_running(pgdata)
        except embedded_pg.EmbeddedPostgresError as exc:
            raise ImproperlyConfigured(str(exc)) from exc
        self.settings_dict["HOST"] = address.host
        self.settings_dict["PORT"] = str(address.port)
        self.settings_dict["USER"] = address.user
        name = self.settings_dict.get("NAME") or "postgres"
        _ensure_database(address, name)
        return super().get_connection_params()
