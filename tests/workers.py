"""Starting real Celery worker processes against the test database and broker."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

from django.db import connection


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
) -> Iterator[subprocess.Popen]:
    """A `celery worker` process (prefork pool) for the duration of the block."""
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
    proc = subprocess.Popen(args, env=worker_env(extra_env))
    try:
        time.sleep(0.5)
        if proc.poll() is not None:
            raise RuntimeError(f"celery worker exited at once with {proc.returncode}")
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
