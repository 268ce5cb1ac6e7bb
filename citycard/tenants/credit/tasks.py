"""Credit tasks: the citizen-code rides' fares booked in every tenant (beat)."""

from __future__ import annotations

from django.db import connection
from django_tenants.utils import tenant_context

from citycard.platform.celery import app
from citycard.platform.models import Tenant
from citycard.tenants.credit.services import online_fares_book


@app.task(name="citycard.tenants.credit.tasks.online_fares_book_all")
def online_fares_book_all() -> dict:
    """Beat: in every tenant, the citizen-code rides read since the last run (its cursor) booked onto
    credit lines or online accounts (idempotent: a ride is booked once, whichever run books it)."""
    done: dict[str, dict] = {}
    for tenant in Tenant.objects.exclude(schema_name="public"):
        if tenant.is_platform:
            continue
        with tenant_context(tenant):
            counts = online_fares_book(actor="credit:fares")
        if any(counts.values()):
            done[tenant.code] = counts
    connection.set_schema_to_public()
    return done
