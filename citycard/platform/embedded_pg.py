"""The embedded PostgreSQL server: started from the ``pgserver`` wheel when ``DATABASE_URL`` is unset.

The server lives in ``<CITYCARD_DATA_DIR>/pg``, listens only on a Unix socket, and outlives the process
that started it so that web, worker and CLI processes share one server; the next start reuses it.
``citycard db stop`` (or :func:`stop`) shuts it down.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

from django.utils.translation import gettext_noop

# The tuning applied once, when the data directory is first initialised. Sized for one machine running
# the web server, a few Celery workers and the test suite at once.
SERVER_SETTINGS = {
    "max_connections": "300",
    "shared_buffers": "512MB",
    "work_mem": "32MB",
    "maintenance_work_mem": "256MB",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "15min",
    "timezone": "'Asia/Shanghai'",
    "max_locks_per_transaction": "512",
}
_TUNING_MARKER = "# citycard tuning"
# A throwaway cluster (the test suite's: ``make test`` sets CITYCARD_PG_DURABLE=off) skips flushing to disk:
# a crash of the machine could corrupt it, a crash of PostgreSQL or of the test cannot (what is committed
# is in the operating system's cache). Never for a cluster whose data is kept.
THROWAWAY_SETTINGS = {"fsync": "off", "full_page_writes": "off"}
_THROWAWAY_MARKER = "# citycard throwaway cluster"


class EmbeddedPostgresError(RuntimeError):
    """The embedded PostgreSQL server could not be started; the message says why."""


@dataclass(frozen=True)
class ServerAddress:
    host: str
    port: int
    user: str = "postgres"

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@/{database}?host={self.host}&port={self.port}"


_lock = threading.Lock()
_started: dict[Path, ServerAddress] = {}
_started_here: set[Path] = set()  # servers this process started (rather than found running)


DEMO_DATA_DIR = Path(".citycard") / "demo"  # where `make demo` puts its data, under the checkout


def data_dir_chosen(environ=None, cwd: Path | None = None) -> tuple[Path, str]:
    """The data directory and why it is that one: ``CITYCARD_DATA_DIR`` when set; else ``./.citycard/demo``
    when it exists in the current directory (so the commands run after ``make demo`` in the checkout find
    its database); else ``$XDG_DATA_HOME/citycard`` (``~/.local/share/citycard``)."""
    environ = os.environ if environ is None else environ  # the reason: English, `db status` translates it
    if environ.get("CITYCARD_DATA_DIR"):
        return Path(environ["CITYCARD_DATA_DIR"]).expanduser().resolve(), "CITYCARD_DATA_DIR"
    demo = (cwd or Path.cwd()) / DEMO_DATA_DIR
    if demo.is_dir():
        return demo.resolve(), gettext_noop("make demo's, found in the current directory")
    base = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return (Path(base) / "citycard").expanduser().resolve(), gettext_noop("the default")


def default_data_dir() -> Path:
    """The data directory when CITYCARD_DATA_DIR is unset (see ``data_dir_chosen``)."""
    return data_dir_chosen({k: v for k, v in os.environ.items() if k != "CITYCARD_DATA_DIR"})[0]


def _import_pgserver():
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import pgserver
            from pgserver import utils as pgserver_utils
        except ImportError as exc:  # pragma: no cover - only without the dependency
            raise EmbeddedPostgresError(
                "the embedded PostgreSQL needs the 'pgserver' package; install it or set DATABASE_URL"
            ) from exc
    return pgserver, pgserver_utils


def _throwaway() -> bool:
    return os.environ.get("CITYCARD_PG_DURABLE", "on").strip().lower() in {"off", "0", "no", "false"}


def _tune(pgdata: Path) -> bool:
    """Append our settings to postgresql.conf once (and the throwaway cluster's when asked for); returns
    True when a restart is needed."""
    conf = pgdata / "postgresql.conf"
    text = conf.read_text()
    lines = []
    if _TUNING_MARKER not in text:
        lines += [f"\n{_TUNING_MARKER}\n"] + [f"{k} = {v}\n" for k, v in SERVER_SETTINGS.items()]
    if _throwaway() and _THROWAWAY_MARKER not in text:
        lines += [f"\n{_THROWAWAY_MARKER}\n"] + [f"{k} = {v}\n" for k, v in THROWAWAY_SETTINGS.items()]
    if not lines:
        return False
    conf.write_text(text + "".join(lines))
    return True


def ensure_running(pgdata: str | Path) -> ServerAddress:
    """Start (or attach to) the embedded server in ``pgdata`` and return where it listens.

    Raises EmbeddedPostgresError with one line naming the cause when it cannot start.
    """
    pgdata = Path(pgdata).expanduser().resolve()
    with _lock:
        if pgdata in _started:
            return _started[pgdata]
        pgserver, _ = _import_pgserver()
        was_running = is_running(pgdata)
        try:
            pgdata.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EmbeddedPostgresError(f"cannot create the data directory {pgdata.parent}: {exc}") from exc
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                server = pgserver.get_server(pgdata, cleanup_mode=None)
                if _tune(pgdata):
                    from pgserver._commands import pg_ctl

                    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=server.system_user)
                    _forget_instance(pgdata)
                    server = pgserver.get_server(pgdata, cleanup_mode=None)
            info = server.get_postmaster_info()
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError, AssertionError) as exc:
            log = pgdata / "log"
            tail = ""
            if log.exists():
                lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
                tail = f"; last log line: {lines[-1]}" if lines else ""
            raise EmbeddedPostgresError(
                f"the embedded PostgreSQL in {pgdata} could not start ({type(exc).__name__}: {exc}){tail}"
            ) from exc
        if info.socket_dir is None:
            raise EmbeddedPostgresError(f"the embedded PostgreSQL in {pgdata} reports no socket directory")
        address = ServerAddress(host=str(info.socket_dir), port=int(info.port or 5432))
        _started[pgdata] = address
        if not was_running:
            _started_here.add(pgdata)
        return address


def _forget_instance(pgdata: Path) -> None:
    """Drop pgserver's cached handle (and its exit hook) so the next start makes a fresh one."""
    pgserver, _utils = _import_pgserver()
    instance = pgserver.PostgresServer._instances.pop(pgdata, None)
    if instance is not None:
        atexit.unregister(instance._cleanup)


def is_running(pgdata: str | Path) -> bool:
    pgdata = Path(pgdata).expanduser().resolve()
    if not (pgdata / "postmaster.pid").exists():
        return False
    _pgserver, pgserver_utils = _import_pgserver()
    info = pgserver_utils.PostmasterInfo.read_from_pgdata(pgdata)
    return bool(info and info.is_running())


def stop(pgdata: str | Path) -> bool:
    """Stop the embedded server in ``pgdata``; returns False when it was not running."""
    pgdata = Path(pgdata).expanduser().resolve()
    if not is_running(pgdata):
        _started.pop(pgdata, None)
        return False
    _import_pgserver()
    from pgserver._commands import pg_ctl

    user = "pgserver" if os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    _started.pop(pgdata, None)
    _forget_instance(pgdata)
    return True


def stop_if_started_here() -> None:
    """Stop every server this process started; servers it merely attached to keep running."""
    for pgdata in list(_started_here):
        try:
            stop(pgdata)
        finally:
            _started_here.discard(pgdata)
