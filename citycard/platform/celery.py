"""The Celery app. Tasks that touch a tenant run in that tenant's schema: the schema name travels in
the task's headers (tenant-schemas-celery), so ``with tenant_context(t): task.delay()`` is enough."""

from __future__ import annotations

import os

from tenant_schemas_celery.app import CeleryApp

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "citycard.platform.settings")

app = CeleryApp("citycard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect
def _make_broker_folders(sender, **kwargs):
    options = sender.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "control_folder"):
        if options.get(key):
            os.makedirs(options[key], exist_ok=True)
    backend = str(sender.conf.result_backend or "")
    if backend.startswith("file://"):
        os.makedirs(backend[len("file://") :], exist_ok=True)
