"""The database goes away while a terminal uploads over real HTTP, and comes back.

The project's WSGI application on a loopback port (wsgiref, a thread per request, as in
tests/e2e/test_upload_fuzz.py). A terminal uploads batch after batch, sending each again after any 503
until it is answered 200, as a terminal does. As its second batch reaches the server the database goes
away, two ways: ``stopped``, the session's embedded PostgreSQL shut down (as ``citycard db stop`` does: every
session ended, the socket gone) and started again; ``refusing``, the test database refusing new connections
(``ALTER DATABASE … ALLOW_CONNECTIONS false``) with every connection to it ended (``pg_terminate_backend``),
which also runs where DATABASE_URL names a server that is not the test's to stop. Meanwhile every upload is
answered 503 ``unavailable`` with ``Retry-After`` (JSON, never a 500 or HTML) and /readyz 503. When the
database is back the same batches are accepted (or answered as duplicates), no tap is lost or stored twice,
and /readyz answers 200.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import psycopg2
import pytest
from django.db import OperationalError, connection, connections
from django_tenants.utils import tenant_context

from citycard.platform import keys
from citycard.platform.models import Tenant
from citycard.platform.observability import metrics
from citycard.tenants.terminals.models import Transaction
from citycard.tenants.terminals.simulate import SimCard, card_number
from citycard.terminal_kit.beijing import BEIJING
from tests.e2e.terminals import sim_terminal_register

pytestmark = pytest.mark.slow

HOST = "hangzhou.localhost"
URL = "/terminal/v1/batches"
BATCHES, TAPS = 8, 300
_posts: list[float] = []  # when each POST reached the application


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server(committed_db) -> Iterator[tuple[str, int]]:
    from citycard.platform.wsgi import application as django_application

    def application(environ, start_response):
        if environ["REQUEST_METHOD"] == "POST":
            _posts.append(time.monotonic())
        try:
            return django_application(environ, start_response)
        finally:
            connections.close_all()  # this request's thread ends: so does its database connection

    httpd = make_server("127.0.0.1", 0, application, server_class=_Server, handler_class=_QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address
    httpd.shutdown()
    httpd.server_close()


def request(address, method: str, path: str, *, host: str = HOST, body: bytes | None = None):
    """(status, headers, body) of one request on its own connection."""
    conn = http.client.HTTPConnection(*address, timeout=60)
    try:
        headers = {"Host": host}
        if body is not None:
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


class Refusing:
    """The test database refusing connections, and every connection to it ended, until ``end()``."""

    def __init__(self) -> None:
        self.name = connection.settings_dict["NAME"]
        params = connection.get_connection_params()
        params["dbname"] = "postgres"
        params.pop("database", None)
        self.admin = psycopg2.connect(**params)
        self.admin.autocommit = True

    def begin(self) -> None:
        connections.close_all()  # this thread's own connection would be ended too
        with self.admin.cursor() as cur:
            cur.execute(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false')
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s"
                " AND pid <> pg_backend_pid()",
                [self.name],
            )

    def end(self) -> None:
        with self.admin.cursor() as cur:
            cur.execute(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')

    def close(self) -> None:
        self.end()
        self.admin.close()


class Stopped:
    """The embedded PostgreSQL shut down as ``citycard db stop`` does (SIGINT to the postmaster: a fast
    shutdown, every session ended), then started again (``citycard db start``) in the same data directory,
    on the same socket."""

    def __init__(self) -> None:
        self.socket = connection.settings_dict["HOST"]
        self.pgdata = Path(connection.settings_dict["EMBEDDED_PGDATA"])

    def _db(self, action: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "citycard.platform.cli", "db", action],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "CITYCARD_LANGUAGE": "en"},  # the words read below are the English ones
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    def begin(self) -> None:
        connections.close_all()
        pid_file = self.pgdata / "postmaster.pid"
        os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)
        # A fast shutdown still writes its checkpoint: on a loaded machine after a long suite, tens of seconds.
        deadline = time.monotonic() + 180
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not pid_file.exists(), "the embedded PostgreSQL did not stop within 180 s"

    def end(self) -> None:
        assert f"(socket {self.socket})" in self._db("start")

    def close(self) -> None:
        # Whatever happened, the suite goes on with a running server: wait out a shutdown still under way
        # (it refuses connections until it is done), then start it again.
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if "stopped" in self._db("status"):
                self.end()
                return
            try:
                connections.close_all()
                connection.ensure_connection()
                return
            except OperationalError:
                time.sleep(0.5)


def _unavailable(status: int, headers: dict, answer: bytes) -> None:
    assert status == 503, (status, answer[:300])
    assert headers["Content-Type"] == "application/json", (headers, answer[:300])
    assert int(headers["Retry-After"]) > 0
    assert json.loads(answer)["error"]["code"] == "unavailable"


@pytest.mark.parametrize("outage", ["refusing", "stopped"])
def test_uploads_answer_503_while_the_database_is_down_and_lose_nothing_when_it_is_back(
    server, caplog, outage
):
    if outage == "stopped" and os.environ.get("DATABASE_URL"):
        pytest.skip("DATABASE_URL names the server: not the test's to stop")
    caplog.set_level(logging.INFO)
    failed_before = _sample(metrics.UPLOADS, "failed")
    errors_before = _sample(metrics.HTTP_REQUESTS, "5xx")
    _posts.clear()
    hangzhou = Tenant.objects.get(code="hangzhou")
    sim = sim_terminal_register(
        tenant=hangzhou,
        terminal_id=f"HZ-OUT-{uuid.uuid4().hex[:8]}",
        route="7",
        terminal_no="330100000777",
        operator="杭州公交集团",
    )
    now = dt.datetime.now(BEIJING).replace(microsecond=0)
    serial = int(uuid.uuid4().int % 10**8)
    sent: list[list[dict]] = []
    for b in range(BATCHES):
        at = now - dt.timedelta(hours=1) + dt.timedelta(seconds=b * TAPS)
        taps = [
            sim.tap(SimCard(card_number("330100", serial + b * TAPS + i)), at=at + dt.timedelta(seconds=i))
            for i in range(TAPS)
        ]
        if sent:
            taps[0] = dict(sent[-1][-1])  # the last tap of the batch before, sent again: a duplicate
        sent.append(taps)
    bodies = [sim.sign(sim.payload(taps, created_at=dt.datetime.now(BEIJING))) for taps in sent]
    assert request(server, "GET", "/readyz", host="localhost")[0] == 200

    answers: list[tuple[int, int, dict, bytes]] = []  # (batch, status, headers, body), in order
    first_503 = threading.Event()
    go_on = threading.Event()

    def terminal() -> None:
        for n, body in enumerate(bodies):
            while True:
                if n == 2:
                    go_on.wait(30)  # the batches from the third on go while the database is down
                status, headers, answer = request(server, "POST", URL, body=body)
                answers.append((n, status, headers, answer))
                if status == 200:
                    break
                first_503.set()
                time.sleep(0.2)  # the terminal would wait Retry-After; the test does not

    outage = Refusing() if outage == "refusing" else Stopped()
    try:
        uploader = threading.Thread(target=terminal)
        uploader.start()
        while len(_posts) < 2:  # the second batch has reached the server: cut it off on its way
            time.sleep(0.001)
        outage.begin()
        go_on.set()
        assert first_503.wait(20), answers
        status, headers, answer = request(server, "GET", "/readyz", host="localhost")
        assert (status, json.loads(answer)["database"]) == (503, "down"), answer
        _unavailable(*request(server, "POST", URL, body=bodies[-1]))
        _unavailable(*request(server, "GET", "/terminal/v1/hotlist"))
        page = request(server, "GET", "/", host="localhost")
        outage_pages = page[0]
        time.sleep(1)  # a few more attempts of the terminal, all refused
        outage.end()
        uploader.join(60)
        assert not uploader.is_alive()
    finally:
        outage.close()

    assert request(server, "GET", "/readyz", host="localhost")[0] == 200
    refused = [a for a in answers if a[1] != 200]
    assert len(refused) >= 3, [(n, s) for n, s, _, _ in answers]
    for _, status, headers, answer in refused:
        _unavailable(status, headers, answer)
    acks = {
        n: keys.tenant_verify(tenant=hangzhou, document=json.loads(answer))[1]
        for n, status, _, answer in answers
        if status == 200
    }
    assert sorted(acks) == list(range(BATCHES))
    assert all(ack["accepted"] + ack["duplicates"] == TAPS for ack in acks.values()), acks
    with tenant_context(hangzhou):
        stored = list(
            Transaction.objects.filter(terminal_id=sim.terminal_id).values_list("terminal_seq", flat=True)
        )
    taps_sent = {tap["terminal_seq"] for taps in sent for tap in taps}
    assert len(stored) == len(set(stored)), "a tap stored twice"
    assert set(stored) == taps_sent, "a tap lost"
    assert sum(ack["accepted"] for ack in acks.values()) == len(taps_sent)

    # What operations.md tells to watch: the request lines, the readiness line, the metrics.
    lines = [r for r in caplog.records if r.name == "citycard.request" and r.fields["path"] == URL]
    unavailable = [r for r in lines if r.fields["outcome"] == "unavailable"]
    assert len(unavailable) == len(refused) + 1 and all(r.levelno == logging.WARNING for r in unavailable)
    assert any(r.getMessage().startswith("readiness: the database is down: ") for r in caplog.records)
    # A page answers 500 (HTML); every 503 and 500 counts as a 5xx; an upload counts as failed only when
    # the database went away while its view ran (the second batch, if the cut came after the tenant
    # lookup): the others are refused before the view, when the tenant is looked up.
    assert outage_pages == 500
    assert _sample(metrics.HTTP_REQUESTS, "5xx") - errors_before >= len(refused) + 3
    failed = _sample(metrics.UPLOADS, "failed") - failed_before
    assert failed <= 1
    print(f"second batch first answered {answers[1][1]}; uploads counted failed: {failed:.0f}")


def _sample(counter, outcome: str) -> float:
    return counter.labels(outcome)._value.get()
