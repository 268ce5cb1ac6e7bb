"""Every answer on the terminal routes is JSON with a code and a message, whoever answers: the upload, the
hotlist, the tenant routing, URL resolution, method checks, a database or broker outage (503 with
Retry-After) or a bug (500 with the request id). The upload takes bodies up to its own limit (4 MiB),
past Django's 2.5 MiB, which every other route keeps."""

from __future__ import annotations

import json

import psycopg2
import pytest
from django.db import InterfaceError, OperationalError
from django.test import Client
from django_tenants.utils import tenant_context
from kombu.exceptions import OperationalError as BrokerOperationalError

from citycard.platform import services
from citycard.platform.middleware import TenantMiddleware
from citycard.tenants.terminals import views
from citycard.tenants.terminals.models import Transaction

from .conftest import cards, taps_for
from .test_upload import URL, hz, post, snapshot  # noqa: F401  (hz is a fixture)

pytestmark = pytest.mark.django_db
MiB = 1024 * 1024


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    assert len(response["X-Request-Id"]) == 32
    error = response.json()["error"]
    assert error["code"] == code and error["message"], error
    return error


def test_a_batch_between_djangos_limit_and_ours_is_taken(client, hz, now):  # noqa: F811
    """Django refuses bodies over 2.5 MiB with an HTML 400; the documented limit is 4 MiB."""
    _, sim = hz
    body = sim.sign(sim.payload(taps_for(sim, cards("330100", 3), now), created_at=now))
    padded = body[:-1] + b" " * (3 * MiB) + b"}"  # whitespace: the same document
    response = post(client, padded)
    assert response.status_code == 200, response.content[:300]
    assert json.loads(response.content)["payload"]["accepted"] == 3


def test_a_body_over_the_limit_is_413_json_and_writes_nothing(client, hz, now):  # noqa: F811
    hangzhou, sim = hz
    body = sim.sign(sim.payload(taps_for(sim, cards("330100", 1), now), created_at=now))
    before = snapshot(hangzhou)
    error = _error(post(client, body[:-1] + b" " * (4 * MiB) + b"}"), 413, "too_large")
    assert error["message"] == f"the batch is {len(body) + 4 * MiB} bytes; the limit is {4 * MiB}"
    assert snapshot(hangzhou) == before


def test_other_routes_keep_djangos_body_limit(client, settings):
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE == 2621440  # Django's, untouched
    response = client.post(
        "/admin/login/",
        b"a=" + b"x" * (3 * MiB),
        "application/x-www-form-urlencoded",
        HTTP_HOST="hangzhou.localhost",
    )
    assert response.status_code == 400
    assert not response["Content-Type"].startswith("application/json")


@pytest.mark.parametrize(
    ("method", "path", "status", "code", "says"),
    [
        ("get", "/terminal/v1/batches", 405, "method_not_allowed", "GET is not allowed here; use POST"),
        ("post", "/terminal/v1/hotlist", 405, "method_not_allowed", "POST is not allowed here; use GET"),
        ("get", "/terminal/v1/keys", 404, "not_found", "the path no terminal route"),
        ("get", "/terminal", 404, "not_found", "the path no terminal route"),
        ("get", "/terminal/v1/hotlist?since=1", 401, "unsigned", "X-Terminal-Signature"),
    ],
)
def test_routing_and_method_answers_are_json(client, method, path, status, code, says):
    response = getattr(client, method)(path, HTTP_HOST="hangzhou.localhost")
    assert says in _error(response, status, code)["message"]
    if status == 405:
        assert response["Allow"] == ("POST" if "batches" in path else "GET")


@pytest.mark.parametrize(
    ("since", "says"),
    [("x", "since must be"), ("%C2%B2", "since must be"), ("9" * 5000, "at most 18 digits")],  # "²": isdigit
)
def test_a_signed_hotlist_request_with_a_bad_since_answers_json(client, tenant, since, says):
    from django_tenants.utils import tenant_context

    from ...terminal_auth import signed, terminal_with_key

    with tenant_context(tenant("hangzhou")):
        credentials = terminal_with_key(terminal_id="hz-answers-1", tenant_code="hangzhou")
    path = f"/terminal/v1/hotlist?since={since}"
    response = client.get(path, HTTP_HOST="hangzhou.localhost", **signed(credentials, path))
    assert says in _error(response, 400, "invalid")["message"]


def test_an_unknown_or_suspended_tenant_answers_json(client, hz, now):  # noqa: F811
    _, sim = hz
    body = sim.sign(sim.payload(taps_for(sim, cards("330100", 1), now), created_at=now))
    error = _error(post(client, body, host="nowhere"), 404, "not_found")
    # No citizen-card tenant answers on nowhere.localhost (a terminal sends no Accept-Language: Chinese).
    assert error["message"] == "主机名 nowhere.localhost 不属于任何市民卡租户。"
    services.tenant_suspend(code="hangzhou", reason="contract ended", actor="test")
    assert (
        "已在本平台停用：contract ended"  # is suspended on this platform
        in _error(post(client, body), 403, "forbidden")["message"]
    )
    # A route elsewhere keeps its plain-text answer.
    assert client.get("/", HTTP_HOST="nowhere.localhost")["Content-Type"].startswith("text/plain")


def test_a_host_not_allowed_answers_json(client):
    response = client.get("/terminal/v1/hotlist", HTTP_HOST="terminals.example.org")
    assert "the host names no tenant" in _error(response, 404, "not_found")["message"]


@pytest.mark.parametrize(
    ("failure", "what"),
    [
        (OperationalError("server closed the connection unexpectedly"), "database"),
        (InterfaceError("connection already closed"), "database"),
        (psycopg2.OperationalError("could not connect to server"), "database"),  # raw, from a COPY
        (BrokerOperationalError("Error 111 connecting to localhost:6379"), "message broker"),
    ],
)
def test_an_outage_during_the_upload_is_503_with_retry_after(hz, now, monkeypatch, failure, what):  # noqa: F811
    _, sim = hz
    body = sim.sign(sim.payload(taps_for(sim, cards("330100", 1), now), created_at=now))

    def down(**kwargs):
        raise failure

    monkeypatch.setattr(views, "batch_ingest", down)
    client = Client(raise_request_exception=False)
    response = post(client, body)
    error = _error(response, 503, "unavailable")
    assert response["Retry-After"] == "30"
    assert error["message"].startswith(f"the {what} is unavailable; send the same request again in 30 s")
    monkeypatch.undo()
    assert post(client, body).status_code == 200  # and once it is back, the same batch is taken


def test_a_database_outage_in_the_tenant_routing_is_503(client, monkeypatch):
    """The tenant's domain is looked up before any terminal view runs: the first query to fail."""

    def down(self, model, hostname):
        raise OperationalError('connection to server on socket "/tmp/.s.PGSQL.5432" failed')

    monkeypatch.setattr(TenantMiddleware, "get_tenant", down)
    response = Client(raise_request_exception=False).get(
        "/terminal/v1/hotlist", HTTP_HOST="hangzhou.localhost"
    )
    _error(response, 503, "unavailable")
    assert response["Retry-After"] == "30"


def test_a_bug_is_a_json_500_naming_its_request_id(hz, now, monkeypatch, caplog):  # noqa: F811
    hangzhou, sim = hz
    body = sim.sign(sim.payload(taps_for(sim, cards("330100", 1), now), created_at=now))
    monkeypatch.setattr(views, "batch_ingest", lambda **kwargs: 1 / 0)
    response = post(Client(raise_request_exception=False), body)
    error = _error(response, 500, "internal")
    assert error["request_id"] == response["X-Request-Id"]
    assert error["request_id"] in error["message"]
    logged = [r for r in caplog.records if r.name == "citycard.platform.terminal_answers"]
    assert logged[0].exc_info[0] is ZeroDivisionError and error["request_id"] in logged[0].getMessage()
    with tenant_context(hangzhou):
        assert not Transaction.objects.exists()


def test_a_refusal_of_the_upload_keeps_its_own_code(client, hz, now):  # noqa: F811
    _, sim = hz
    body = sim.sign(sim.payload(taps_for(sim, cards("330100", 1), now), created_at=now))
    _error(post(client, body, content_type="text/plain"), 415, "unsupported_media_type")
    _error(post(client, b"[" * 5000 + b"]" * 5000), 400, "malformed")
    _error(post(client, body.replace(b'{"payload":', b'{"payload":{},"payload":', 1)), 400, "malformed")
