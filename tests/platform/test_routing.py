"""Domain routing: a request on <code>.<base> runs in that tenant's schema, and interleaved requests
for two tenants over one persistent connection never see each other's rows."""

from __future__ import annotations

import pytest
from django.db import connection
from django_tenants.utils import schema_context

from citycard.platform.audit.services import audit_record

pytestmark = pytest.mark.django_db


def _backend_pid() -> int:
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        return cur.fetchone()[0]


def test_each_host_runs_in_its_own_schema(client):
    for code in ("hangzhou", "jiaxing", "tonglu"):
        body = client.get("/status.json", HTTP_HOST=f"{code}.localhost").json()
        assert (body["tenant"], body["schema"]) == (code, code)
    platform = client.get("/status.json", HTTP_HOST="localhost").json()
    assert (platform["tenant"], platform["schema"]) == ("public", "public")


def test_unknown_host_is_404(client):
    response = client.get("/", HTTP_HOST="atlantis.localhost")
    assert response.status_code == 404
    assert "atlantis.localhost" in response.content.decode()


def test_interleaved_requests_over_one_connection_never_mix_rows(client):
    with schema_context("hangzhou"):
        for i in range(3):
            audit_record(action="probe.hangzhou", actor="test", object_id=f"hz-{i}")
    with schema_context("jiaxing"):
        audit_record(action="probe.jiaxing", actor="test", object_id="jx-0")

    pids = set()
    for _ in range(5):
        for code, own, other in (("hangzhou", "hz-", "jx-"), ("jiaxing", "jx-", "hz-")):
            body = client.get("/status.json", HTTP_HOST=f"{code}.localhost").json()
            pids.add(_backend_pid())
            ids = [row["object_id"] for row in body["recent"]]
            assert body["schema"] == code
            assert any(i.startswith(own) for i in ids)
            assert not any(i.startswith(other) for i in ids)
        platform = client.get("/status.json", HTTP_HOST="localhost").json()
        assert not any(r["action"].startswith("probe.") for r in platform["recent"])
    assert len(pids) == 1, "the requests should have shared one database connection"


def test_home_pages_render(client):
    assert "Hangzhou" in client.get("/", HTTP_HOST="localhost").content.decode()
    page = client.get("/", HTTP_HOST="tonglu.localhost").content.decode()
    assert "桐庐县" in page and "yrd" in page and "杭州市" in page
