"""The embedded Celery broker: a ``redis-server`` of the project's own when ``CELERY_BROKER_URL`` is unset.

Why Redis rather than a broker in files: a worker takes a task without removing it from the broker (Celery
acknowledges it late, after the task ran), and Redis hands a task whose worker died out again once its
visibility timeout has passed. The filesystem broker deletes a task when a worker takes it, so a task
whose worker is killed is lost (docs/clearing.md, "When a worker dies").

Like the embedded PostgreSQL it lives under ``<CITYCARD_DATA_DIR>`` (``redis/``), listens only on a Unix
socket, keeps its data in an append-only file (tasks queued survive a restart of the server), and outlives
the process that started it, so web, worker, beat and CLI processes share one server; ``citycard broker
stop`` (or :func:`stop`) shuts it down. It needs the ``redis-server`` program (Debian's ``redis-server``,
installed by ``make demo`` / ``make test`` as root); without it the settings fall back to the filesystem
broker and say so.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import shutil
import subprocess
import threading
import time
from pathlib import Path

# A Unix socket's path holds at most 107 bytes; a longer one goes to /tmp under a name derived from it.
_SOCKET_PATH_MAX = 100
_lock = threading.Lock()
_started_here: set[Path] = set()  # servers this process started (rather than found running)


class EmbeddedRedisError(RuntimeError):
    """The embedded redis-server could not be started; the message says why."""


def available() -> bool:
    return shutil.which("redis-server") is not None


def socket_path(data_dir: str | Path) -> Path:
    data_dir = Path(data_dir).expanduser().resolve()
    path = data_dir / "redis.sock"
    if len(str(path)) <= _SOCKET_PATH_MAX:
        return path
    return Path("/tmp") / f"citycard-redis-{hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]}.sock"


def broker_url(data_dir: str | Path) -> str:
    return f"redis+socket://{socket_path(data_dir)}"


def _client(data_dir: Path):
    import redis

    return redis.Redis(
        unix_socket_path=str(socket_path(data_dir)), socket_timeout=5, socket_connect_timeout=2
    )


def is_running(data_dir: str | Path) -> bool:
    data_dir = Path(data_dir).expanduser().resolve()
    if not socket_path(data_dir).exists():
        return False
    import redis

    try:
        return bool(_client(data_dir).ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False


def _start(data_dir: Path) -> None:
    server = shutil.which("redis-server")
    if server is None:
        raise EmbeddedRedisError(
            "the embedded Celery broker needs redis-server; install it or set CELERY_BROKER_URL"
        )
    args = [
        server,
        "--port",
        "0",  # no TCP: only this machine's processes, through the socket
        "--unixsocket",
        str(socket_path(data_dir)),
        "--unixsocketperm",
        "700",
        "--dir",
        str(data_dir),
        "--daemonize",
        "yes",
        "--pidfile",
        str(data_dir / "redis.pid"),
        "--logfile",
        str(data_dir / "redis.log"),
        "--loglevel",
        "warning",
        # Durable: every write goes to the append-only file, flushed to disk each second; no snapshots.
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
    ]
    try:
        subprocess.run(args, check=True, capture_output=True, timeout=30)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        raise EmbeddedRedisError(
            f"redis-server could not start in {data_dir}: {exc}{_log_tail(data_dir)}"
        ) from exc
    deadline = time.monotonic() + 15
    while not is_running(data_dir):
        if time.monotonic() > deadline:
            raise EmbeddedRedisError(f"redis-server in {data_dir} does not answer{_log_tail(data_dir)}")
        time.sleep(0.05)


def _log_tail(data_dir: Path) -> str:
    log = data_dir / "redis.log"
    if not log.exists():
        return ""
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    return f"; last log line: {lines[-1]}" if lines else ""


@contextlib.contextmanager
def _start_lock(data_dir: Path):
    """One starter at a time among this machine's processes (web, workers and CLI may start together)."""
    with open(data_dir / "start.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_running(data_dir: str | Path) -> str:
    """Start (or find running) the embedded redis-server in ``data_dir``; its broker URL.

    Raises EmbeddedRedisError with one line naming the cause when it cannot start."""
    data_dir = Path(data_dir).expanduser().resolve()
    with _lock:
        if is_running(data_dir):
            return broker_url(data_dir)
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EmbeddedRedisError(f"cannot create the broker directory {data_dir}: {exc}") from exc
        with _start_lock(data_dir):
            if not is_running(data_dir):
                _start(data_dir)
                _started_here.add(data_dir)
        return broker_url(data_dir)


def stop(data_dir: str | Path) -> bool:
    """Stop the embedded server in ``data_dir`` (its append-only file flushed); False if it was not running."""
    import redis

    data_dir = Path(data_dir).expanduser().resolve()
    _started_here.discard(data_dir)
    if not is_running(data_dir):
        return False
    with contextlib.suppress(redis.ConnectionError):  # the server closes the connection as it exits
        _client(data_dir).shutdown()
    deadline = time.monotonic() + 15
    while is_running(data_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    return True


def stop_if_started_here() -> None:
    """Stop every server this process started; servers it merely attached to keep running."""
    for data_dir in list(_started_here):
        stop(data_dir)


def flush(data_dir: str | Path) -> None:
    """Drop every queued task and stored result (the test suite starts from an empty broker: the queue of a
    test database that no longer exists means nothing)."""
    data_dir = Path(data_dir).expanduser().resolve()
    if is_running(data_dir):
        _client(data_dir).flushall()
