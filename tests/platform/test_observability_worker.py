"""A real Celery worker (prefork pool) logs one JSON line per task, and its samples reach the web's
/metrics through the shared multiprocess directory."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django_tenants.utils import tenant_context

from citycard.platform.models import Tenant
from citycard.platform.tasks import audit_verify_chain
from tests.workers import celery_worker

pytestmark = pytest.mark.worker
TASK = "citycard.platform.tasks.audit_verify_chain"


def tasks_done() -> float:
    from prometheus_client.parser import text_string_to_metric_families  # after the metrics module

    text = Client().get("/metrics", HTTP_HOST="localhost").content.decode()
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "citycard_tasks_total" and s.labels == {"task": TASK, "outcome": "success"}
    )


def test_a_worker_logs_a_json_line_per_task_and_its_metrics_reach_the_web(committed_db, tmp_path):
    before = tasks_done()
    log = tmp_path / "worker.log"
    with (
        log.open("wb") as stderr,
        celery_worker(name="obs", stderr=stderr, extra_env={"CITYCARD_LOG_FORMAT": "json"}),
    ):
        with tenant_context(Tenant.objects.get(code="hangzhou")):
            result = audit_verify_chain.delay()
        assert result.get(timeout=90)["schema"] == "hangzhou"
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    task_lines = [line for line in lines if line.get("logger") == "citycard.task"]
    assert [(t["task"], t["tenant"], t["outcome"]) for t in task_lines] == [(TASK, "hangzhou", "success")]
    assert task_lines[0]["duration_ms"] >= 0
    assert tasks_done() - before == 1
