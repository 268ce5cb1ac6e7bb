"""Prometheus metrics of every process on this machine (web processes, Celery workers, beat).

prometheus_client's multiprocess mode: each process writes its samples to files in
``PROMETHEUS_MULTIPROC_DIR`` (default ``$CITYCARD_DATA_DIR/metrics``), and ``/metrics`` sums them, so any
gunicorn worker answers for all and the Celery workers' clearing steps show on the web's ``/metrics``.
The directory must be the same for all of them (one machine, or one shared volume); a worker on another
machine is not seen (docs/operations.md, "Metrics"). Counters and histograms only: the samples of an ended
process stay in the sums, as Prometheus expects of counters.

The variable is read when prometheus_client is first imported: this module sets it (unless the
environment did) before importing it, and is the only module of the project that imports it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from django.conf import settings

os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(settings.METRICS_DIR))
os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

from prometheus_client import (  # noqa: E402 - after PROMETHEUS_MULTIPROC_DIR is set (module docstring)
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector  # noqa: E402

# False when prometheus_client was imported before the variable was set (by a module outside the project):
# then this process's samples are kept in its memory and /metrics shows this process only.
MULTIPROCESS = values.ValueClass is not values.MutexValue

SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
STEP_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

HTTP_REQUESTS = Counter(
    "citycard_http_requests", "HTTP requests answered, by status class (2xx, 3xx, 4xx, 5xx)", ["status_class"]
)
UPLOADS = Counter(
    "citycard_terminal_uploads",
    "Terminal batch uploads, by outcome: stored, replayed (a resend), or the refusal's code, or failed",
    ["outcome"],
)
TAPS = Counter(
    "citycard_terminal_taps",
    "Taps of stored batches (resends not counted again), by outcome (accepted, duplicate, rejected, "
    "conflict) and the reason of a rejection",
    ["outcome", "reason"],
)
# Every metric has labels: a process writes no file before it records something (a `citycard` command
# that only imports the project leaves nothing in the directory).
UPLOAD_SECONDS = Histogram(
    "citycard_terminal_upload_seconds",
    "Time to read, check and store one uploaded batch, by outcome (stored, replayed, refused, failed)",
    ["outcome"],
    buckets=SECONDS,
)
CLEARING_STEP_SECONDS = Histogram(
    "citycard_clearing_step_seconds",
    "Duration of one clearing step (close, validate, net, settle) of one cycle",
    ["step", "network", "service"],
    buckets=STEP_SECONDS,
)
GRAPHQL_SECONDS = Histogram(
    "citycard_graphql_request_seconds",
    "GraphQL requests, from authentication to the answer, by endpoint (tenant, platform)",
    ["endpoint"],
    buckets=SECONDS,
)
GRAPHQL_COST = Histogram(
    "citycard_graphql_cost",
    "Cost of each GraphQL operation that ran (docs/graphql.md), by endpoint",
    ["endpoint"],
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500),
)
GRAPHQL_OPERATIONS = Counter(
    "citycard_graphql_operations",
    "GraphQL operations by endpoint and outcome (ok, or the first error's code)",
    ["endpoint", "outcome"],
)
TASKS = Counter("citycard_tasks", "Celery tasks run, by task name and outcome", ["task", "outcome"])
TASK_SECONDS = Histogram(
    "citycard_task_seconds", "Celery task run time, by task name", ["task"], buckets=STEP_SECONDS
)


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else "other"


def upload_observe(*, outcome: str, seconds: float) -> None:
    """``outcome``: stored, replayed, failed, or the refusal's code (refused, for the latency)."""
    UPLOADS.labels(outcome).inc()
    UPLOAD_SECONDS.labels(outcome if outcome in {"stored", "replayed", "failed"} else "refused").observe(
        seconds
    )


def taps_count(*, accepted: int, duplicates: int, rejected: Mapping[str, int], conflicts: int) -> None:
    """``rejected``: rejected taps by reason."""
    if accepted:
        TAPS.labels("accepted", "").inc(accepted)
    if duplicates:
        TAPS.labels("duplicate", "").inc(duplicates)
    if conflicts:
        TAPS.labels("conflict", "conflict").inc(conflicts)
    for reason, count in rejected.items():
        TAPS.labels("rejected", reason).inc(count)


def render() -> tuple[bytes, str]:
    """The exposition of every process's samples (of this process only, without the multiprocess mode),
    and its content type."""
    if not MULTIPROCESS:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return generate_latest(registry), CONTENT_TYPE_LATEST
