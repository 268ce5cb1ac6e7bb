"""Platform tasks."""

from __future__ import annotations

from django.db import connection
from django_tenants.utils import tenant_context

from citycard.platform.audit.selectors import audit_verify
from citycard.platform.celery import app
from citycard.platform.models import Tenant


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
