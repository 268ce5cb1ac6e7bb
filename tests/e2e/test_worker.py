"""A real Celery worker process runs a task in the tenant's schema (the tenant travels with the task)."""

from __future__ import annotations

import pytest
from django_tenants.utils import tenant_context

from citycard.platform import services
from citycard.platform.audit.services import audit_record
from citycard.platform.models import Tenant
from citycard.platform.tasks import audit_verify_chain
from tests.workers import celery_worker

pytestmark = pytest.mark.worker


def test_worker_runs_task_in_tenant_schema(committed_db):
    tenant = Tenant.objects.filter(code="xuzhou").first() or services.tenant_create(
        code="xuzhou", division_code="320300", actor="test"
    )
    with tenant_context(tenant):
        for i in range(3):
            audit_record(action="probe.worker", actor="test", object_id=str(i))
        expected_entries = audit_verify_chain.run()["entries"]

    with celery_worker(name="e2e"):
        with tenant_context(tenant):
            in_tenant = audit_verify_chain.delay()
        in_public = audit_verify_chain.delay()
        tenant_result = in_tenant.get(timeout=90)
        public_result = in_public.get(timeout=90)

    assert tenant_result["schema"] == "xuzhou"
    assert tenant_result["entries"] == expected_entries >= 4
    assert tenant_result["problems"] == []
    assert public_result["schema"] == "public"
