"""Settlement tasks: records booked after their cycle settled, settled on the ledger in every tenant (beat)."""

from __future__ import annotations

from django.db import connection
from django_tenants.utils import tenant_context

from citycard.platform.celery import app
from citycard.platform.models import Tenant
from citycard.tenants.settlement.services import differences_settle_late


@app.task(name="citycard.tenants.settlement.tasks.differences_settle_late_all")
def differences_settle_late_all() -> dict:
    """Beat: in every tenant, the records its ledger did not hold when their cycle settled and holds now (a
    citizen-code fare booked onto its cardholder after the file came) settled by their own posting
    (idempotent: a record is settled once, whichever run settles it; one query where nothing waits)."""
    done: dict[str, list[str]] = {}
    for tenant in Tenant.objects.exclude(schema_name="public"):
        if tenant.is_platform:
            continue
        with tenant_context(tenant):
            settled = differences_settle_late(actor="settlement:late")
        if settled:
            done[tenant.code] = [d.record_id for d in settled]
    connection.set_schema_to_public()
    return done
