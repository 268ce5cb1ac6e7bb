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


def test_each_host_runs_in_its_own_schema(staff_client):
    for code in ("hangzhou", "jiaxing", "tonglu"):
        body = staff_client(code).get("/status.json", HTTP_HOST=f"{code}.localhost").json()
        assert (body["tenant"], body["schema"]) == (code, code)
    platform = staff_client(None).get("/status.json", HTTP_HOST="localhost").json()
    assert (platform["tenant"], platform["schema"]) == ("public", "public")


@pytest.mark.parametrize(
    "host",
    [
        "HANGZHOU.localhost",
        "HangZhou.LocalHost",
        "hangzhou.localhost.",
        "Hangzhou.Localhost.:8000",
        "www.hangzhou.localhost",
    ],
)
def test_host_names_match_whatever_their_case_trailing_dot_or_port(staff_client, host):
    body = staff_client("hangzhou").get("/status.json", HTTP_HOST=host).json()
    assert (body["tenant"], body["schema"]) == ("hangzhou", "hangzhou")


def test_the_platform_answers_on_its_host_in_any_case(staff_client):
    body = staff_client(None).get("/status.json", HTTP_HOST="LOCALHOST.").json()
    assert body["schema"] == "public"


def test_unknown_host_is_404(client):
    response = client.get("/", HTTP_HOST="atlantis.localhost")
    assert response.status_code == 404
    assert "atlantis.localhost" in response.content.decode()


def test_interleaved_requests_over_one_connection_never_mix_rows(staff_client):
    with schema_context("hangzhou"):
        for i in range(3):
            audit_record(action="probe.hangzhou", actor="test", object_id=f"hz-{i}")
    with schema_context("jiaxing"):
        audit_record(action="probe.jiaxing", actor="test", object_id="jx-0")

    clients = {code: staff_client(code) for code in ("hangzhou", "jiaxing", None)}
    pids = set()
    for _ in range(5):
        for code, own, other in (("hangzhou", "hz-", "jx-"), ("jiaxing", "jx-", "hz-")):
            body = clients[code].get("/status.json", HTTP_HOST=f"{code}.localhost").json()
            pids.add(_backend_pid())
            ids = [row["object_id"] for row in body["recent"]]
            assert body["schema"] == code
            assert any(i.startswith(own) for i in ids)
            assert not any(i.startswith(other) for i in ids)
        platform = clients[None].get("/status.json", HTTP_HOST="localhost").json()
        assert not any(r["action"].startswith("probe.") for r in platform["recent"])
    assert len(pids) == 1, "the requests should have shared one database connection"


def test_home_pages_render_for_their_sites_staff(staff_client):
    assert "Hangzhou" in staff_client(None).get("/", HTTP_HOST="localhost").content.decode()
    page = staff_client("tonglu").get("/", HTTP_HOST="tonglu.localhost").content.decode()
    assert "桐庐县" in page and "yrd" in page and "杭州市" in page
