"""Starting real Celery worker processes against the test database and broker."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

from django.db import connection

from citycard.platform.celery import broker_ensure_running


def worker_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a worker that uses this test session's database and broker."""
    env = dict(os.environ)
    test_db = connection.settings_dict["NAME"]
    if env.get("DATABASE_URL"):
        parts = urlsplit(env["DATABASE_URL"])
        env["DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{test_db}"))
    else:
        env["CITYCARD_DB_NAME"] = test_db
    env.setdefault("CITYCARD_LOG_LEVEL", "WARNING")
    env.update(extra or {})
    return env


@contextlib.contextmanager
def celery_worker(
    *,
    name: str = "w1",
    concurrency: int = 1,
    queues: str | None = None,
    extra_env: dict[str, str] | None = None,
    beat_schedule: str | None = None,
    stderr=None,
) -> Iterator[subprocess.Popen]:
    """A `celery worker` process (prefork pool) for the duration of the block; with ``beat_schedule`` (a
    file) it runs Celery beat too, as ``celery worker --beat``; ``stderr``: where its log goes (a file)."""
    args = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "citycard.platform.celery",
        "worker",
        "--pool=prefork",
        f"--concurrency={concurrency}",
        "--loglevel=WARNING",
        "-n",
        f"{name}@%h",
        "--without-heartbeat",
        "--without-mingle",
        "--without-gossip",
    ]
    if queues:
        args += ["-Q", queues]
    if beat_schedule:
        args += ["--beat", f"--schedule={beat_schedule}"]
    if not (extra_env or {}).get("CELERY_BROKER_URL"):
        broker_ensure_running()  # the embedded broker is this session's, not the worker's
    # A process group of its own: killing the worker's group (the main process, its pool and beat) leaves
    # the test alone.
    proc = subprocess.Popen(args, env=worker_env(extra_env), start_new_session=True, stderr=stderr)
    try:
        time.sleep(0.5)
        if proc.poll() is not None:
            raise RuntimeError(f"celery worker exited at once with {proc.returncode}")
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()  # a warm shutdown: the worker stops its pool processes and beat
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                kill_group(proc)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL to the worker's whole process group (main process, pool processes, beat), as a machine
    that loses power or an OOM kill of the cgroup would: nothing gets to clean up or hand a task back."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
