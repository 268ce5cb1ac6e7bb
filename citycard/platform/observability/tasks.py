"""One log line per Celery task (``citycard.task``, INFO; WARNING when it failed) and the task metrics;
a worker's own log lines in the chosen format.

    {"logger": "citycard.task", "message": "task citycard.interop.tasks.cycle_step success 41.0 ms schema=public",
     "task": "citycard.interop.tasks.cycle_step", "tenant": "public", "outcome": "success", "duration_ms": 41.0,
     "task_id": "…"}

Never the task's arguments or result. Connected by citycard/platform/celery.py; eager tasks
(``CITYCARD_CELERY_EAGER``, ``task.apply()``) send the same signals and log the same line.
"""

from __future__ import annotations

import logging
import time

from celery import signals
from django.conf import settings

from citycard.platform.observability import metrics
from citycard.platform.observability.logs import JsonFormatter

log = logging.getLogger("citycard.task")

_started: dict[str, float] = {}


def _schema(task) -> str:
    """The tenant schema the task runs in (tenant-schemas-celery's header), or the public schema."""
    request = task.request
    headers = request.headers or {}
    return headers.get("_schema_name") or request.get("_schema_name") or settings.PUBLIC_SCHEMA_NAME


@signals.task_prerun.connect(dispatch_uid="citycard-task-log-start")
def _task_start(task_id=None, task=None, **kwargs) -> None:
    if task_id is not None:
        _started[task_id] = time.perf_counter()


@signals.task_postrun.connect(dispatch_uid="citycard-task-log-end")
def _task_end(task_id=None, task=None, state=None, **kwargs) -> None:
    started = _started.pop(task_id, None)
    if task is None:
        return
    seconds = time.perf_counter() - started if started is not None else 0.0
    outcome = (state or "unknown").lower()
    name = task.name
    schema = _schema(task)
    metrics.TASKS.labels(name, outcome).inc()
    metrics.TASK_SECONDS.labels(name).observe(seconds)
    log.log(
        logging.WARNING if outcome == "failure" else logging.INFO,
        "task %s %s %.1f ms schema=%s",
        name,
        outcome,
        seconds * 1000,
        schema,
        extra={
            "fields": {
                "task": name,
                "tenant": schema,
                "outcome": outcome,
                "duration_ms": round(seconds * 1000, 1),
                "task_id": task_id,
            }
        },
    )


@signals.after_setup_logger.connect(dispatch_uid="citycard-worker-log-format")
@signals.after_setup_task_logger.connect(dispatch_uid="citycard-worker-task-log-format")
def _worker_log_format(logger=None, **kwargs) -> None:
    """A worker configures its own handlers (and its --loglevel); in JSON mode they write JSON too."""
    if logger is None or settings.LOG_FORMAT != "json":
        return
    for handler in logger.handlers:
        handler.setFormatter(JsonFormatter())
