"""Running clearing tasks on real Celery worker processes from a command (the demo's clearing step).

``clearing_workers()`` starts a ``celery worker`` (prefork pool) on this machine, listening on a queue of
its own, against the configured broker (the embedded one under ``CITYCARD_DATA_DIR``, started first if it
is not running, unless ``CELERY_BROKER_URL`` names another) and the same database; ``run_on_workers``
dispatches task signatures to it and waits for their results. If no worker can start, or a worker dies or
does not answer in time, ``WorkersUnavailable`` says why and the caller runs the same task functions in its
own process.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import connection

from citycard.platform.celery import broker_ensure_running
from citycard.platform.embedded_redis import EmbeddedRedisError


class WorkersUnavailable(RuntimeError):
    pass


@dataclass
class Workers:
    process: subprocess.Popen
    queue: str
    concurrency: int
    log: Path

    def alive(self) -> bool:
        return self.process.poll() is None


@contextlib.contextmanager
def clearing_workers(*, concurrency: int = 2, queue: str | None = None) -> Iterator[Workers]:
    """A worker process with ``concurrency`` pool processes for the duration of the block."""
    queue = queue or f"clearing-{os.getpid()}"
    log = Path(settings.DATA_DIR) / "logs" / "clearing-workers.log"
    log.parent.mkdir(parents=True, exist_ok=True)
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
        f"{queue}@%h",
        "-Q",
        queue,
        "--without-heartbeat",
        "--without-mingle",
        "--without-gossip",
    ]
    env = {**os.environ, "CITYCARD_CELERY_EAGER": "0"}
    try:
        broker_ensure_running()
    except EmbeddedRedisError as exc:
        raise WorkersUnavailable(str(exc)) from exc
    with open(log, "ab") as out:
        try:
            process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
        except OSError as exc:
            raise WorkersUnavailable(f"could not start a celery worker: {exc}") from exc
    workers = Workers(process=process, queue=queue, concurrency=concurrency, log=log)
    try:
        time.sleep(0.5)
        if not workers.alive():
            raise WorkersUnavailable(f"the celery worker exited at once ({process.returncode}); see {log}")
        yield workers
    finally:
        if workers.alive():
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def run_on_workers(workers: Workers, signatures: list, *, timeout: float = 300.0) -> list:
    """Send the task signatures to the workers' queue at once and wait for every result, in order."""
    connection.set_schema_to_public()  # tasks dispatched from the public schema run there
    results = [signature.apply_async(queue=workers.queue) for signature in signatures]
    deadline = time.monotonic() + timeout
    while not all(r.ready() for r in results):
        if not workers.alive():
            raise WorkersUnavailable(
                f"the celery worker died ({workers.process.returncode}); see {workers.log}"
            )
        if time.monotonic() > deadline:
            raise WorkersUnavailable(
                f"no answer from the celery worker within {timeout:.0f} s; see {workers.log}"
            )
        time.sleep(0.1)
    return [r.get(timeout=10, propagate=True, disable_sync_subtasks=False) for r in results]
