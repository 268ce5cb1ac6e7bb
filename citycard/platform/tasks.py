"""Platform tasks."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import connection
from django.utils import timezone
from django_tenants.utils import tenant_context

from citycard.platform.audit.selectors import audit_verify
from citycard.platform.celery import app
from citycard.platform.models import Tenant
from citycard.platform.services import rate_windows_purge as _rate_windows_purge


@app.task(name="citycard.platform.tasks.audit_verify_chain")
def audit_verify_chain() -> dict:
    """Verify the audit chain of the schema this task runs in (the tenant travels with the task)."""
    result = audit_verify()
    return {"schema": connection.schema_name, "entries": result.entries, "problems": result.problems}


@app.task(name="citycard.platform.tasks.audit_verify_all")
def audit_verify_all() -> dict:
    """Nightly: queue a verification of the public chain and of every tenant's chain."""
    queued = [audit_verify_chain.delay().id]
    for tenant in Tenant.objects.exclude(schema_name="public").only("schema_name"):
        with tenant_context(tenant):
            queued.append(audit_verify_chain.delay().id)
    return {"queued": len(queued)}


def rate_windows_kept() -> dt.timedelta:
    """How long a counter's window is kept after it started: a day, or the longest window configured (a
    counter dropped while its window runs would reopen what it limits)."""
    longest = max(
        settings.GRAPHQL_RATE_WINDOW_S, settings.ID_VERIFY_WINDOW_S, settings.GRAPHQL_AUTH_FAILURES_WINDOW_S
    )
    return max(dt.timedelta(days=1), dt.timedelta(seconds=longest))


@app.task(name="citycard.platform.tasks.rate_windows_purge")
def rate_windows_purge() -> int:
    """Hourly: drop rate-limit counters whose window has ended (``rate_windows_kept``)."""
    return _rate_windows_purge(before=timezone.now() - rate_windows_kept())
