"""Platform tasks."""

from __future__ import annotations

import datetime as dt

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


@app.task(name="citycard.platform.tasks.rate_windows_purge")
def rate_windows_purge() -> int:
    """Hourly: drop rate-limit counters older than a day."""
    return _rate_windows_purge(before=timezone.now() - dt.timedelta(days=1))
