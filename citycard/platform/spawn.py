"""Spawned pool workers of a Django process: a fresh interpreter set up as its parent is.

A spawned worker imports its initializer before Django is set up, so this module imports nothing of the
project's models. It carries over the settings a process may hold otherwise than its settings module
says: the databases (a test session's test database; the embedded server's address once this process
has connected to it) and the migration modules (a migration given for one run, as ``benchmarks/migrate.py``
and the tests do). The settings module itself and everything else come from the environment and
``sys.path``, which a spawned process inherits.
"""

from __future__ import annotations

from typing import Any

import django
from django.conf import settings
from django.db import connections

CARRIED = ("DATABASES", "MIGRATION_MODULES")


def settings_carried() -> dict[str, Any]:
    """The settings of this process a spawned worker takes (``CARRIED``), the databases as this process
    connects to them."""
    carried = {name: getattr(settings, name) for name in CARRIED}
    databases = {}
    for alias, database in connections.settings.items():
        database = dict(database)
        if database.get("EMBEDDED_PGDATA") and database.get("HOST"):
            # The embedded server runs and this process has its address (db/base.py): the worker connects
            # there as it is. Starting the server's handle again in each worker would register its pid in
            # a file of the data directory as it starts, a write a worker ended early could cut short.
            del database["EMBEDDED_PGDATA"]
        databases[alias] = database
    carried["DATABASES"] = databases
    return carried


def django_worker_start(carried: dict[str, Any]) -> None:
    """A spawned pool's initializer: Django set up with the parent's ``carried`` settings."""
    for name, value in carried.items():
        setattr(settings, name, value)
    django.setup()
