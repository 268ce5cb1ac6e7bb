"""A PgBouncer in transaction mode in front of a PostgreSQL server, run as a child process.

What the tests (tests/pgbouncer.py) and benchmarks/pgbouncer_ingest.py start in front of the embedded server;
in production PgBouncer runs as its own service with the same settings (docs/scale-out.md, "Connection
pooling"). The application reaches it through ``DATABASE_URL`` with ``CITYCARD_DB_POOLING=transaction``
(citycard/platform/db/base.py says what that changes).

Debian's ``pgbouncer`` package provides the program (``apt-get install pgbouncer``; ``make test`` installs it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2


class PgBouncerError(RuntimeError):
    """PgBouncer could not be started; the message says why."""


def program() -> str | None:
    """The pgbouncer program, or None when it is not installed."""
    return shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if Path(p).exists()), None
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PgBouncer:
    """One pgbouncer process listening on 127.0.0.1:``port``, pooling ``server_host``:``server_port``.

    ``pool_size`` server connections per (database, user) pair at most: a small pool makes clients of many
    tenants take turns on the same few server connections, as a busy production pool does."""

    directory: Path
    server_host: str  # a host name or the directory of the server's Unix socket
    server_port: int
    user: str = "postgres"  # what clients log in as (and the admin console's user)
    server_user: str | None = None  # the role pgbouncer logs in to the server as; else the client's
    pool_size: int = 2
    max_client_conn: int = 200
    port: int = 0
    process: subprocess.Popen | None = field(default=None, repr=False)

    def config(self) -> str:
        """pgbouncer.ini: every database of the server, transaction pooling, trust on loopback (the tests'
        embedded server trusts its socket; production uses auth_type = scram-sha-256 and an auth_file)."""
        return "\n".join(
            [
                "[databases]",
                # timezone: server connections in UTC, the time zone Django sets on every new connection
                # otherwise (a SET, and a transaction through the pool, per request with CONN_MAX_AGE=0).
                f"* = host={self.server_host} port={self.server_port} user={self.server_user or self.user}"
                " timezone=UTC",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {self.port}",
                f"unix_socket_dir = {self.directory}",
                "auth_type = trust",
                f"auth_file = {self.directory / 'userlist.txt'}",
                f"admin_users = {self.user}",
                f"stats_users = {self.user}",
                "pool_mode = transaction",
                f"default_pool_size = {self.pool_size}",
                "min_pool_size = 0",
                "reserve_pool_size = 0",
                f"max_client_conn = {self.max_client_conn}",
                # No reset between clients in transaction mode (what pgbouncer does by default): nothing the
                # application does may outlive its transaction (citycard/platform/db/base.py).
                "server_reset_query =",
                "server_check_query = select 1",
                "server_lifetime = 3600",
                "server_idle_timeout = 600",
                f"logfile = {self.directory / 'pgbouncer.log'}",
                f"pidfile = {self.directory / 'pgbouncer.pid'}",
                "log_connections = 0",
                "log_disconnections = 0",
                "",
            ]
        )

    def url(self, database: str) -> str:
        """What ``DATABASE_URL`` is for a process that goes through this pgbouncer to ``database``."""
        return f"postgres://{self.user}@127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 15) -> PgBouncer:
        binary = program()
        if binary is None:
            raise PgBouncerError("pgbouncer is not installed (apt-get install pgbouncer)")
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "userlist.txt").write_text(f'"{self.user}" ""\n')
        self.port = self.port or _free_port()
        ini = self.directory / "pgbouncer.ini"
        ini.write_text(self.config())
        args = [binary, str(ini)]
        if os.geteuid() == 0:
            # pgbouncer refuses to run as root: as root it becomes the user that owns the server's socket
            # directory (the embedded server's, which only its owner may enter), else nobody.
            server_dir = Path(self.server_host)
            owner = server_dir.owner() if server_dir.is_dir() else "nobody"
            for path in (self.directory, *self.directory.iterdir()):
                shutil.chown(path, user=owner)
            args[1:1] = ["-u", owner]
        log = open(self.directory / "stderr.log", "w")  # noqa: SIM115 - the child's, closed when it ends
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PgBouncerError(f"pgbouncer exited with {self.process.returncode}: {self._log_tail()}")
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            time.sleep(0.05)
        self.stop()
        raise PgBouncerError(f"pgbouncer did not listen on port {self.port}: {self._log_tail()}")

    def _log_tail(self) -> str:
        texts = []
        for name in ("stderr.log", "pgbouncer.log"):
            with contextlib.suppress(OSError):
                texts.append((self.directory / name).read_text()[-2000:])
        return " | ".join(t.strip() for t in texts if t.strip())

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def admin(self, command: str) -> list[dict[str, object]]:
        """A ``SHOW ...`` of the admin console (the ``pgbouncer`` pseudo-database), as rows of dicts."""
        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user, dbname="pgbouncer")
        try:
            conn.autocommit = True  # the console takes no BEGIN
            with conn.cursor() as cur:
                cur.execute(command)
                names = [c.name for c in cur.description]
                return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        finally:
            conn.close()

    def __enter__(self) -> PgBouncer:
        return self.start() if self.process is None else self

    def __exit__(self, *exc) -> None:
        self.stop()
