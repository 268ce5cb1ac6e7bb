"""Payment channel tasks: the sweep of overdue orders (超时查单) in every tenant."""

from __future__ import annotations

from django.db import connection
from django_tenants.utils import tenant_context

from citycard.platform.celery import app
from citycard.platform.models import Tenant
from citycard.tenants.payments.services import topup_orders_sweep


@app.task(name="citycard.tenants.payments.tasks.orders_sweep_all")
def orders_sweep_all() -> dict:
    """Beat: in every tenant, ask the providers about orders left unpaid or unnotified past their channel's
    query time, credit those paid and close those unpaid past the close time (idempotent: a paid or closed
    order is not asked again)."""
    done: dict[str, dict] = {}
    for tenant in Tenant.objects.exclude(schema_name="public"):
        if tenant.is_platform:
            continue
        with tenant_context(tenant):
            result = topup_orders_sweep(actor="payments:sweep")
        if result.queried:
            done[tenant.code] = {
                "queried": result.queried,
                "credited": len(result.credited),
                "closed": len(result.closed),
                "failed": len(result.failed),
            }
    connection.set_schema_to_public()
    return done
