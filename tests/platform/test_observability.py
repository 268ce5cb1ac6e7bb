"""Operability: one JSON log line per request and per task, with ids and codes but never a query string or
personal data; /metrics counting uploads, taps and GraphQL operations, for local scrapers and the
platform's staff only; Sentry configured to send nothing about a person."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import sys
import types

import pytest
from django.test import Client
from django.utils import timezone
from django_tenants.utils import tenant_context

from citycard.platform import services
from citycard.platform.models import Role
from citycard.platform.observability import sentry
from citycard.platform.observability.addresses import address_allowed, networks_parse
from citycard.platform.observability.logs import JsonFormatter, log_format
from citycard.platform.scopes import Scope
from citycard.platform.tasks import audit_verify_chain
from citycard.tenants.terminals.services import terminal_register
from citycard.tenants.terminals.simulate import SimCard, SimTerminal, card_number
from citycard.terminal_kit.beijing import BEIJING
from tests.interop.conftest import yrd_transit  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db
PASSWORD = "a-long-test-password"
REQUEST_KEYS = {"time", "level", "logger", "message", "method", "path", "status", "outcome", "duration_ms",
                "request_id"}  # fmt: skip
REMOTE = "203.0.113.9"  # TEST-NET-3: neither loopback nor in any default allow-list


def lines_of(caplog, logger: str) -> list[dict]:
    """The records of ``logger`` as the JSON formatter writes them, each parsed back."""
    formatter = JsonFormatter()
    return [json.loads(formatter.format(r)) for r in caplog.records if r.name == logger]


def scrape(client: Client | None = None) -> dict[tuple[str, tuple], float]:
    # Imported here: prometheus_client reads PROMETHEUS_MULTIPROC_DIR when it is first imported, which
    # citycard's metrics module sets first (a test module is imported before it).
    from prometheus_client.parser import text_string_to_metric_families

    response = (client or Client()).get("/metrics", HTTP_HOST="localhost")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def delta(after: dict, before: dict, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


@pytest.fixture
def hz_terminal(tenant):
    hangzhou = tenant("hangzhou")
    sim = SimTerminal("HZ-OBS-0001", "hangzhou", route="315")
    with tenant_context(hangzhou):
        from django.db import connection

        from citycard.platform.keys import tenant_card_tac_master

        sim.tac_masters["330100"] = tenant_card_tac_master(tenant=connection.tenant.clearing_tenant)
        terminal_register(
            terminal_id=sim.terminal_id,
            operator="Test Bus Co.",
            department="transport",
            service=sim.service,
            route=sim.route,
            public_key=sim.public_key,
            actor="test",
        )
    return sim


def batch(sim: SimTerminal, *, bad: bool = False) -> bytes:
    now = timezone.now().astimezone(BEIJING).replace(microsecond=0)
    at = now - dt.timedelta(minutes=10)
    taps = [
        sim.tap(SimCard(card_number("330100", 1 + i)), at=at + i * dt.timedelta(seconds=30)) for i in range(3)
    ]
    if bad:
        taps.append(dict(taps[0], amount_fen=-5, terminal_seq=99))  # rejected: negative_amount
    return sim.sign(sim.payload(taps, created_at=now))


def upload(client: Client, sim: SimTerminal, body: bytes | None = None):
    body = body if body is not None else batch(sim)
    return client.post(
        "/terminal/v1/batches", body, content_type="application/json", HTTP_HOST="hangzhou.localhost"
    )


def api_key() -> tuple[str, str]:
    key, token = services.api_key_issue(
        tenant_code="hangzhou", name="observability test app", scopes=list(Scope.values), actor="test"
    )
    return key.key_id, token


QUERY = "{ servicePoints(first: 5) { edges { node { code } } } }"


def graphql(client: Client, token: str):
    return client.post(
        "/graphql/",
        json.dumps({"query": QUERY}),
        content_type="application/json",
        HTTP_HOST="hangzhou.localhost",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


# --- logs ------------------------------------------------------------------------------------------


def test_a_request_line_is_json_with_its_ids_and_never_the_query_string(client, caplog):
    caplog.set_level(logging.INFO, logger="citycard.request")
    response = client.get("/healthz?name=张三&id=330106197905040917", HTTP_HOST="hangzhou.localhost")
    assert response.status_code == 200
    (line,) = lines_of(caplog, "citycard.request")
    assert set(line) >= REQUEST_KEYS
    assert (line["method"], line["path"], line["status"], line["outcome"]) == ("GET", "/healthz", 200, "ok")
    assert line["request_id"] == response["X-Request-Id"]
    assert isinstance(line["duration_ms"], float)
    text = json.dumps(line, ensure_ascii=False)
    assert "张三" not in text and "330106197905040917" not in text and "?" not in text


def test_the_upload_line_names_the_tenant_terminal_and_outcome(client, caplog, hz_terminal):
    caplog.set_level(logging.INFO, logger="citycard.request")
    assert upload(client, hz_terminal).status_code == 200
    refused = client.post(
        "/terminal/v1/batches", b"{}", content_type="application/json", HTTP_HOST="hangzhou.localhost"
    )
    stored, refusal = lines_of(caplog, "citycard.request")
    assert (stored["tenant"], stored["terminal"], stored["outcome"]) == ("hangzhou", "HZ-OBS-0001", "stored")
    assert (refusal["status"], refusal["outcome"]) == (refused.status_code, refused.json()["error"]["code"])
    assert "terminal" not in refusal  # a batch not verified names no terminal
    assert refusal["request_id"] == refused["X-Request-Id"]
    assert "card_no" not in json.dumps(stored) and "330100" not in json.dumps(stored)


def test_the_graphql_line_names_the_key_by_id_never_by_its_secret(client, caplog):
    caplog.set_level(logging.INFO, logger="citycard.request")
    key_id, token = api_key()
    assert graphql(client, token).status_code == 200
    (line,) = lines_of(caplog, "citycard.request")
    assert (line["tenant"], line["api_key"], line["outcome"]) == ("hangzhou", key_id, "ok")
    assert token not in json.dumps(line)


def test_a_signed_in_users_line_has_the_users_id_not_name(caplog):
    caplog.set_level(logging.INFO, logger="citycard.request")
    user = services.user_create(username="obs-operator-x9", role=Role.PLATFORM_OPERATOR, password=PASSWORD)
    client = Client()
    client.force_login(user)
    assert client.get("/status.json?q=someone", HTTP_HOST="localhost").status_code == 200
    (line,) = lines_of(caplog, "citycard.request")
    assert (line["user"], line["path"], line["tenant"]) == (user.pk, "/status.json", "public")
    assert "obs-operator-x9" not in json.dumps(line)


def test_a_task_line_names_task_schema_outcome_and_duration(tenant, caplog):
    caplog.set_level(logging.INFO, logger="citycard.task")
    with tenant_context(tenant("hangzhou")):
        assert audit_verify_chain.apply().successful()
    (line,) = lines_of(caplog, "citycard.task")
    assert line["task"] == "citycard.platform.tasks.audit_verify_chain"
    assert (line["tenant"], line["outcome"]) == ("hangzhou", "success")
    assert line["duration_ms"] >= 0 and line["task_id"]


def test_json_unless_stderr_is_a_terminal_or_the_format_is_named():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert log_format(None, stream=io.StringIO()) == "json"
    assert log_format("auto", stream=Tty()) == "text"
    assert log_format("json", stream=Tty()) == "json"
    assert log_format("TEXT", stream=io.StringIO()) == "text"
    with pytest.raises(ValueError, match="CITYCARD_LOG_FORMAT"):
        log_format("xml")


def test_a_json_line_keeps_the_traceback_on_one_line():
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.getLogger("t").makeRecord("t", logging.ERROR, "f", 1, "failed", (), sys.exc_info())
    text = JsonFormatter().format(record)
    assert "\n" not in text and "RuntimeError: boom" in json.loads(text)["exc"]


# --- metrics ---------------------------------------------------------------------------------------


def test_metrics_count_uploads_taps_and_graphql_operations(client, hz_terminal):
    before = scrape()
    body = batch(hz_terminal, bad=True)
    assert upload(client, hz_terminal, body).status_code == 200
    assert upload(client, hz_terminal, body).status_code == 200  # a resend: its taps not counted again
    _key_id, token = api_key()
    assert graphql(client, token).status_code == 200
    after = scrape()
    assert delta(after, before, "citycard_terminal_uploads_total", outcome="stored") == 1
    assert delta(after, before, "citycard_terminal_uploads_total", outcome="replayed") == 1
    assert delta(after, before, "citycard_terminal_upload_seconds_count", outcome="stored") == 1
    assert delta(after, before, "citycard_terminal_upload_seconds_count", outcome="replayed") == 1
    assert delta(after, before, "citycard_terminal_taps_total", outcome="accepted", reason="") == 3
    assert (
        delta(after, before, "citycard_terminal_taps_total", outcome="rejected", reason="negative_amount")
        == 1
    )
    assert delta(after, before, "citycard_graphql_operations_total", endpoint="tenant", outcome="ok") == 1
    assert delta(after, before, "citycard_graphql_cost_count", endpoint="tenant") == 1
    assert delta(after, before, "citycard_graphql_cost_sum", endpoint="tenant") == 5
    assert delta(after, before, "citycard_graphql_request_seconds_count", endpoint="tenant") == 1
    assert delta(after, before, "citycard_http_requests_total", status_class="2xx") >= 4


@pytest.mark.usefixtures("yrd_transit")
def test_metrics_count_clearing_steps_and_tasks():
    from citycard.interop.tasks import cycle_step

    before = scrape()
    cycle_step.apply(("yrd", "transit", "2026-03-02", "close", "2026-03-03T09:00:00+08:00")).get()
    after = scrape()
    labels = {"step": "close", "network": "yrd", "service": "transit"}
    assert delta(after, before, "citycard_clearing_step_seconds_count", **labels) == 1
    assert (
        delta(
            after, before, "citycard_tasks_total", task="citycard.interop.tasks.cycle_step", outcome="success"
        )
        == 1
    )


def test_metrics_refused_to_a_remote_anonymous_client_and_through_a_proxy():
    remote = Client(REMOTE_ADDR=REMOTE)
    for host in ("localhost", "hangzhou.localhost"):
        response = remote.get("/metrics", HTTP_HOST=host)
        assert response.status_code == 403
        assert b"citycard_" not in response.content and b"CITYCARD_METRICS_ALLOW" in response.content
    # Through a proxy on the same machine REMOTE_ADDR is loopback: the forwarded client is not trusted.
    proxied = Client().get("/metrics", HTTP_HOST="localhost", HTTP_X_FORWARDED_FOR=REMOTE)
    assert proxied.status_code == 403


def test_metrics_for_local_scrapers_on_every_host_and_for_platform_staff_anywhere(tenant):
    assert Client().get("/metrics", HTTP_HOST="hangzhou.localhost").status_code == 200
    staff = Client(REMOTE_ADDR=REMOTE)
    staff.force_login(services.user_create(username="obs-clr", role=Role.CLEARING_STAFF, password=PASSWORD))
    assert staff.get("/metrics", HTTP_HOST="localhost").status_code == 200
    city = Client(REMOTE_ADDR=REMOTE)
    city.force_login(
        services.user_create(
            username="obs-hz", role=Role.CITY_ADMIN, tenant_code="hangzhou", password=PASSWORD
        )
    )
    assert city.get("/metrics", HTTP_HOST="localhost").status_code == 403


def test_metrics_allow_list_takes_cidr_blocks(settings):
    networks = networks_parse("10.0.0.0/8, 192.0.2.7")
    assert address_allowed("10.20.30.40", networks) and address_allowed("192.0.2.7", networks)
    assert not address_allowed("127.0.0.1", networks) and not address_allowed("garbage", networks)
    assert address_allowed("::ffff:127.0.0.1", networks_parse(None))
    assert networks_parse("") == ()
    with pytest.raises(ValueError, match="CITYCARD_METRICS_ALLOW"):
        networks_parse("10.0.0.0/33")
    settings.METRICS_ALLOW = networks_parse(REMOTE)
    assert Client(REMOTE_ADDR=REMOTE).get("/metrics", HTTP_HOST="localhost").status_code == 200


# --- Sentry ----------------------------------------------------------------------------------------


def test_sentry_starts_only_with_a_dsn_and_sends_no_personal_data(monkeypatch):
    calls: list[dict] = []
    monkeypatch.setitem(sys.modules, "sentry_sdk", types.SimpleNamespace(init=lambda **kw: calls.append(kw)))
    assert sentry.sentry_init(dsn="") is False and calls == []
    assert sentry.sentry_init(dsn="https://key@sentry.example.org/1") is True
    (options,) = calls
    assert options["send_default_pii"] is False
    assert options["include_local_variables"] is False
    assert options["max_request_body_size"] == "never"
    event = {
        "request": {
            "url": "https://hangzhou.example.org/admin/cards/cardholder/?q=张三",
            "query_string": "q=张三",
            "data": {"id_number": "330106197905040917"},
        },
        "breadcrumbs": {"values": [{"data": {"url": "http://x/y?id=1", "http.query": "id=1"}}]},
    }
    scrubbed = options["before_send"](event, None)
    assert "张三" not in json.dumps(scrubbed, ensure_ascii=False)
    assert "330106197905040917" not in json.dumps(scrubbed)
    assert scrubbed["request"]["url"] == "https://hangzhou.example.org/admin/cards/cardholder/"
    assert scrubbed["breadcrumbs"]["values"][0]["data"] == {"url": "http://x/y"}


def test_sentry_without_the_package_warns_and_carries_on(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "sentry_sdk", None)  # import fails
    assert sentry.sentry_init(dsn="https://key@sentry.example.org/1") is False
    assert "sentry-sdk is not installed" in caplog.text
