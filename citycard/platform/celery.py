"""The Celery app. Tasks that touch a tenant run in that tenant's schema: the schema name travels in
the task's headers (tenant-schemas-celery), so ``with tenant_context(t): task.delay()`` is enough."""

from __future__ import annotations

import os

from tenant_schemas_celery.app import CeleryApp

from citycard.platform import embedded_redis

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "citycard.platform.settings")

app = CeleryApp("citycard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect
def _task_log(sender, **kwargs):
    # Imported once the settings are read (the metrics' directory is one): connects one log line and the
    # metrics per task, and the worker's log format (observability/tasks.py).
    from citycard.platform.observability import tasks  # noqa: F401


def broker_ensure_running() -> None:
    """Start the embedded broker (a redis-server under the data directory) unless it runs already or
    CELERY_BROKER_URL names another; a process that starts workers calls it first, so the broker belongs
    to it rather than to a worker it may kill."""
    from django.conf import settings

    if settings.EMBEDDED_BROKER_DIR is not None:
        embedded_redis.ensure_running(settings.EMBEDDED_BROKER_DIR)


@app.on_after_configure.connect
def _broker_ready(sender, **kwargs):
    broker_ensure_running()
    options = sender.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "control_folder"):
        if options.get(key):
            os.makedirs(options[key], exist_ok=True)
    backend = str(sender.conf.result_backend or "")
    if backend.startswith("file://"):
        os.makedirs(backend[len("file://") :], exist_ok=True)
