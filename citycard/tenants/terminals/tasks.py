"""Terminal tasks: month partitions made ahead in every tenant; the verification stage."""

from __future__ import annotations

from django.db import connection
from django_tenants.utils import schema_context, tenant_context

from citycard.platform.celery import app
from citycard.platform.models import Tenant
from citycard.tenants.terminals.partitions import partitions_ahead
from citycard.tenants.terminals.services import code_nonces_purge, half_journeys_release
from citycard.tenants.terminals.verify import batches_verify_all as verify_tenant


@app.task(name="citycard.tenants.terminals.tasks.partitions_ensure_all")
def partitions_ensure_all() -> dict:
    """This month and the next three in every tenant. Idempotent; ingestion also creates a missing month on
    demand. The template is left alone: its partitions are not cloned (a new tenant gets this month's)."""
    created: dict[str, list[str]] = {}
    schemas = list(Tenant.objects.exclude(schema_name="public").values_list("schema_name", flat=True))
    for schema in schemas:
        with schema_context(schema):
            names = partitions_ahead()
        if names:
            created[schema] = names
    connection.set_schema_to_public()
    return {"schemas": len(schemas), "created": created}


@app.task(name="citycard.tenants.terminals.tasks.batches_verify_all")
def batches_verify_all() -> dict:
    """Beat: the verification stage in every tenant with unverified batches (see verify.py). Idempotent:
    a verified batch is never checked again; a tenant another run is verifying is skipped."""
    done: dict[str, dict] = {}
    for tenant in Tenant.objects.exclude(schema_name="public"):
        if tenant.is_platform:
            continue
        with tenant_context(tenant):  # the outbox signs as connection.tenant
            result = verify_tenant(tenant=tenant)
        if result.batches or result.busy:
            done[tenant.code] = {"batches": result.batches, "taps": result.taps, "flags": result.flags}
            done[tenant.code]["busy"] = result.busy
    connection.set_schema_to_public()
    return done


@app.task(name="citycard.tenants.terminals.tasks.half_journeys_release_all")
def half_journeys_release_all() -> dict:
    """Beat: the half journeys past their time-out released in every tenant — roaming cards' cleared alone,
    own cards' settled in the city's books (idempotent)."""
    done: dict[str, int] = {}
    for tenant in Tenant.objects.exclude(schema_name="public"):
        if tenant.is_platform:
            continue
        with tenant_context(tenant):  # the outbox signs as connection.tenant
            released = half_journeys_release(actor="terminals:half-journeys")
        if released:
            done[tenant.code] = released
    connection.set_schema_to_public()
    return done


@app.task(name="citycard.tenants.terminals.tasks.code_nonces_purge_all")
def code_nonces_purge_all() -> dict:
    """Beat: in every tenant, the spent citizen codes too old to be replayed forgotten (idempotent)."""
    done: dict[str, int] = {}
    for tenant in Tenant.objects.exclude(schema_name="public"):
        if tenant.is_platform:
            continue
        with tenant_context(tenant):
            purged = code_nonces_purge()
        if purged:
            done[tenant.code] = purged
    connection.set_schema_to_public()
    return done
