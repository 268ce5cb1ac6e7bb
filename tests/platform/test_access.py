"""Nothing anonymous but health: pages and JSON need a signed-in user of the host's own site; liveness
and readiness answer anyone, carry no data, and readiness is bounded in time."""

from __future__ import annotations

import time

import pytest
from django_tenants.utils import schema_context

from citycard.platform import health
from citycard.platform.audit.services import audit_record

pytestmark = pytest.mark.django_db


def test_status_json_answers_401_without_a_sign_in_and_names_nothing_of_the_tenant(client):
    with schema_context("hangzhou"):
        audit_record(action="card.report_lost", actor="test", object_id="3301000100000017")
    response = client.get("/status.json", HTTP_HOST="hangzhou.localhost")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    assert b"3301000100000017" not in response.content and b"recent" not in response.content


def test_status_json_answers_403_to_staff_of_another_site(staff_client):
    response = staff_client("jiaxing").get("/status.json", HTTP_HOST="hangzhou.localhost")
    assert response.status_code == 403
    body = response.json()
    assert body["error"]["code"] == "wrong_site"
    assert "jiaxing.localhost" in body["error"]["message"]
    assert "recent" not in body


def test_status_json_shows_its_staff_only_their_own_sites_log(staff_client):
    with schema_context("jiaxing"):
        audit_record(action="probe.jiaxing", actor="test", object_id="jx-only")
    body = staff_client("hangzhou").get("/status.json", HTTP_HOST="hangzhou.localhost").json()
    assert body["tenant"] == "hangzhou"
    assert "jx-only" not in {row["object_id"] for row in body["recent"]}


def test_a_page_sends_an_anonymous_browser_to_the_sign_in_form(client):
    response = client.get("/", HTTP_HOST="hangzhou.localhost")
    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/"


def test_a_page_sends_staff_of_another_site_to_the_sign_in_form(staff_client):
    response = staff_client(None).get("/", HTTP_HOST="hangzhou.localhost")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_healthz_answers_anyone_without_touching_the_database(client, django_assert_max_num_queries):
    with django_assert_max_num_queries(0):
        response = client.get("/healthz", HTTP_HOST="hangzhou.localhost")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    assert client.get("/healthz", HTTP_HOST="localhost").status_code == 200


def test_healthz_answers_even_on_a_host_no_tenant_owns(client):
    assert client.get("/healthz", HTTP_HOST="atlantis.localhost").status_code == 200


def test_readyz_names_the_database_and_broker_and_nothing_else(client):
    response = client.get("/readyz", HTTP_HOST="localhost")
    assert (response.status_code, response.json()) == (200, {"database": "ok", "broker": "ok"})


def test_readyz_starts_the_embedded_broker_no_process_has_needed_yet(client, settings):
    from citycard.platform import embedded_redis

    if settings.EMBEDDED_BROKER_DIR is None:
        pytest.skip("redis-server is not installed: the filesystem broker is the embedded one")
    embedded_redis.stop(settings.EMBEDDED_BROKER_DIR)
    assert not embedded_redis.is_running(settings.EMBEDDED_BROKER_DIR)
    response = client.get("/readyz", HTTP_HOST="localhost")
    assert (response.status_code, response.json()) == (200, {"database": "ok", "broker": "ok"})
    assert embedded_redis.is_running(settings.EMBEDDED_BROKER_DIR)


def test_readyz_is_503_naming_the_broker_when_it_is_down_within_its_timeout(client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    settings.READINESS_TIMEOUT_S = 1.0
    started = time.monotonic()
    response = client.get("/readyz", HTTP_HOST="localhost")
    assert time.monotonic() - started < 3
    assert (response.status_code, response.json()) == (503, {"database": "ok", "broker": "down"})


def test_readyz_is_503_naming_the_database_when_it_is_down(client, monkeypatch):
    class Unreachable:
        def get_connection_params(self):
            return {"dbname": "citycard", "user": "citycard", "host": "127.0.0.1", "port": 1}

    monkeypatch.setattr(health, "connections", {"default": Unreachable()})
    response = client.get("/readyz", HTTP_HOST="localhost")
    assert (response.status_code, response.json()) == (503, {"database": "down", "broker": "ok"})


def test_probes_over_plain_http_are_not_redirected_to_https(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/healthz", HTTP_HOST="hangzhou.localhost").status_code == 200
    assert client.get("/readyz", HTTP_HOST="localhost").status_code == 200
    page = client.get("/", HTTP_HOST="hangzhou.localhost")
    assert (page.status_code, page["Location"]) == (301, "https://hangzhou.localhost/")
