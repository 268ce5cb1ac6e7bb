"""Web and worker processes through PgBouncer in transaction mode, tenants interleaved on two server
connections, and no request ever in another tenant's schema.

gunicorn (2 processes × 4 threads) and a Celery worker (2 pool processes) reach the test database only
through a PgBouncer (tests/pgbouncer.py) with ``default_pool_size = 2`` and ``CITYCARD_DB_POOLING=transaction``.
Threads drive, all at once, for five tenants: signed tap uploads to each tenant's domain, GraphQL reads on
each tenant's domain with that tenant's API key, and two clearing cycles of the gba network on the worker
(their issuer validations run in Dongguan's and Shenzhen's schemas). A sixth client poisons the pool all the
while: through the same PgBouncer it sets a session-level ``search_path`` to one tenant after another, which
stays on whatever server connection it lands on, as django-tenants' own ``SET search_path`` would.

Proved: every upload is accepted in full and every GraphQL answer names only its own tenant's terminals and
taps; each tenant's schema holds exactly its own terminals' taps; a trigger in every tenant's schema notes the
server process (``pg_backend_pid()``) and ``current_schema()`` of every tap stored, which shows the same
server processes storing taps of several tenants, always with the schema the tap belongs to; the pooled role's
default search path names no schema, so a statement carrying no schema of its own would have failed; PgBouncer's
admin console shows many clients served by at most two server connections; the cycles clear as on a direct
connection.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import psycopg2
import pytest
from django.db import connection

from citycard.interop import tasks
from citycard.interop.models import ClearingCycle, Journal
from citycard.interop.services.agreements import agreement_set
from citycard.platform import keys, services
from citycard.platform.models import Tenant
from citycard.platform.scopes import Scope
from citycard.tenants.terminals.simulate import SimCard, card_number
from citycard.terminal_kit.beijing import BEIJING
from tests.e2e.terminals import sim_terminal_register
from tests.e2e.test_clearing_worker import _day_of_roaming
from tests.interop.conftest import at
from tests.workers import celery_worker, worker_env

pytestmark = [pytest.mark.worker, pytest.mark.slow]

TENANTS = ["shanghai", "hangzhou", "jiaxing", "dongguan", "shenzhen"]
BATCHES, TAPS = 6, 40  # per tenant
GRAPHQL_ROUNDS = 6  # per tenant
# gba days no other test clears: this test commits what it writes.
DAYS = (dt.date(2025, 3, 22), dt.date(2025, 3, 23))

PROBE_SQL = """
CREATE TABLE IF NOT EXISTS public.pool_probe (pid int, table_schema text, current text, terminal_id text);
CREATE OR REPLACE FUNCTION public.pool_probe_note() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.pool_probe VALUES (pg_backend_pid(), TG_TABLE_SCHEMA, current_schema(), NEW.terminal_id);
  RETURN NULL;
END $$;
"""


def _probe_install(schemas: list[str]) -> None:
    with connection.cursor() as cur:
        cur.execute(PROBE_SQL + "TRUNCATE public.pool_probe")
        for schema in schemas:
            cur.execute(
                f'CREATE TRIGGER pool_probe AFTER INSERT ON "{schema}".terminals_transaction'
                " FOR EACH ROW EXECUTE FUNCTION public.pool_probe_note()"
            )


def _probe_remove(schemas: list[str]) -> None:
    with connection.cursor() as cur:
        for schema in schemas:
            cur.execute(f'DROP TRIGGER IF EXISTS pool_probe ON "{schema}".terminals_transaction')
        cur.execute(
            "DROP FUNCTION IF EXISTS public.pool_probe_note() CASCADE; DROP TABLE IF EXISTS public.pool_probe"
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _request(port: int, method: str, path: str, *, host: str, body: bytes | None = None, token: str = ""):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        headers = {"Host": host}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _json(answer: bytes) -> dict:
    try:
        return json.loads(answer)
    except ValueError:
        return {"not_json": answer[:500].decode(errors="replace")}


def _gunicorn(env: dict[str, str], log) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "citycard.platform.wsgi:application",
            "--config",
            "python:citycard.platform.gunicorn_conf",
            "--workers",
            "2",
            "--threads",
            "4",
            "--bind",
            f"127.0.0.1:{port}",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert server.poll() is None, f"gunicorn exited with {server.returncode}"
        try:
            if _request(port, "GET", "/healthz", host="localhost")[0] == 200:
                return server, port
        except OSError:
            time.sleep(0.2)
    raise AssertionError("gunicorn did not answer /healthz within 60 s")


GRAPHQL = """query Mine($after: DateTime) {
  me { tenant { code } }
  terminals(first: 100) { edges { node { terminalId } } }
  transactions(first: 100, filter: {tappedFrom: $after}) { edges { node { cardNumber terminal { terminalId } } } }
}"""


def test_tenants_interleaved_on_pooled_connections_never_cross(pgbouncer, tmp_path):
    tenants = {code: Tenant.objects.get(code=code) for code in TENANTS}
    schemas = [t.schema_name for t in tenants.values()]
    run = uuid.uuid4().hex[:6].upper()
    sims = {
        code: sim_terminal_register(
            tenant=tenant,
            terminal_id=f"PGB-{code[:3].upper()}-{run}",
            route="9",
            terminal_no=f"{tenant.division_code}000999",
            operator=f"{code} bus",
        )
        for code, tenant in tenants.items()
    }
    tokens = {
        code: services.api_key_issue(
            tenant_code=code, name=f"pgbouncer {run}", scopes=list(Scope.values), actor="test"
        )[1]
        for code in TENANTS
    }
    agreement_set(
        network_code="gba",
        service="transit",
        valid_from=dt.date(2020, 1, 1),
        issuer_fee_bps=30,
        network_fee_bps=5,
        actor="test",
    )
    serial0 = int(uuid.uuid4().int % 10**7) * 100
    for n, day in enumerate(DAYS):
        _day_of_roaming(day, serial0 + 1000 * n)

    now = dt.datetime.now(BEIJING).replace(microsecond=0)
    start = now - dt.timedelta(hours=2)
    bodies: dict[str, list[bytes]] = {}
    for k, (code, sim) in enumerate(sims.items()):
        division = tenants[code].division_code
        bodies[code] = []
        for b in range(BATCHES):
            taps = [
                sim.tap(
                    SimCard(card_number(division, serial0 + 100_000 * k + b * TAPS + i)),
                    at=start + dt.timedelta(seconds=b * TAPS + i),
                )
                for i in range(TAPS)
            ]
            bodies[code].append(sim.sign(sim.payload(taps, created_at=now)))

    env = worker_env(
        {
            "DATABASE_URL": pgbouncer.url(connection.settings_dict["NAME"]),
            "CITYCARD_DB_POOLING": "transaction",
            "CITYCARD_LOG_REQUESTS": "off",
        }
    )
    _probe_install(schemas)
    log = open(tmp_path / "gunicorn.log", "w")  # noqa: SIM115 - closed below
    server, port = None, 0
    stop = threading.Event()
    poisoned = [0]
    peak = {"clients": 0, "servers": 0}

    def poison() -> None:
        """Session-level SETs left on the pool's server connections, a tenant after another."""
        conn = psycopg2.connect(pgbouncer.url(connection.settings_dict["NAME"]))
        conn.autocommit = True
        with conn.cursor() as cur:
            while not stop.is_set():
                cur.execute(f'SET search_path = "{schemas[poisoned[0] % len(schemas)]}", public')
                poisoned[0] += 1
                time.sleep(0.005)
        conn.close()

    def watch() -> None:
        while not stop.is_set():
            for pool in pgbouncer.admin("SHOW POOLS"):
                if pool["database"] == connection.settings_dict["NAME"]:
                    peak["clients"] = max(peak["clients"], pool["cl_active"] + pool["cl_waiting"])
                    peak["servers"] = max(
                        peak["servers"], pool["sv_active"] + pool["sv_idle"] + pool["sv_used"]
                    )
            time.sleep(0.05)

    def upload(code: str, body: bytes) -> tuple[str, str, int, dict]:
        status, answer = _request(port, "POST", "/terminal/v1/batches", host=f"{code}.localhost", body=body)
        return "upload", code, status, _json(answer)

    def query(code: str) -> tuple[str, str, int, dict]:
        body = json.dumps({"query": GRAPHQL, "variables": {"after": start.isoformat()}}).encode()
        status, answer = _request(
            port, "POST", "/graphql/", host=f"{code}.localhost", body=body, token=tokens[code]
        )
        return "graphql", code, status, _json(answer)

    try:
        server, port = _gunicorn(env, log)
        assert _request(port, "GET", "/readyz", host="localhost")[0] == 200  # its check through PgBouncer
        with celery_worker(name="pgb", concurrency=2, extra_env=env):
            side = [threading.Thread(target=poison), threading.Thread(target=watch)]
            for thread in side:
                thread.start()
            cycles = [
                tasks.cycle_process.delay(
                    "gba", "transit", day.isoformat(), at(day + dt.timedelta(days=1), 5).isoformat()
                )
                for day in DAYS
            ]
            jobs = []
            with ThreadPoolExecutor(10) as pool:
                for b in range(max(BATCHES, GRAPHQL_ROUNDS)):
                    for code in TENANTS:
                        if b < BATCHES:
                            jobs.append(pool.submit(upload, code, bodies[code][b]))
                        if b < GRAPHQL_ROUNDS:
                            jobs.append(pool.submit(query, code))
                answers = [job.result() for job in jobs]
            summaries = [c.get(timeout=240) for c in cycles]
            stop.set()
            for thread in side:
                thread.join(30)
    finally:
        stop.set()
        if server is not None:
            server.terminate()
            server.wait(30)
        log.close()
        stats = pgbouncer.admin("SHOW STATS")
        servers = pgbouncer.admin("SHOW SERVERS")
        with connection.cursor() as cur:
            cur.execute("SELECT pid, table_schema, current, terminal_id FROM public.pool_probe")
            probes = cur.fetchall()
        _probe_remove(schemas)

    name = connection.settings_dict["NAME"]
    ours_stats = [s for s in stats if s["database"] == name]
    print(f"pgbouncer: peak {peak}, poisoned {poisoned[0]}, taps probed {len(probes)}, stats {ours_stats}")
    # Every upload accepted in full, on its tenant's domain; every GraphQL answer only its tenant's.
    ours = {sim.terminal_id: code for code, sim in sims.items()}
    for kind, code, status, answer in answers:
        assert status == 200, (code, answer)
        if kind == "upload":
            # The acknowledgement signed with the tenant's own key, for this tenant's terminal.
            ack = keys.tenant_verify(tenant=tenants[code], document=answer)[1]
            assert ack["terminal_id"] == sims[code].terminal_id, (code, ack)
            assert ack["accepted"] == TAPS and ack["rejected"] == 0, (code, ack)
            continue
        assert "errors" not in answer, (code, answer)
        data = answer["data"]
        assert data["me"]["tenant"]["code"] == code
        terminals = {e["node"]["terminalId"] for e in data["terminals"]["edges"]}
        assert sims[code].terminal_id in terminals
        assert {ours[t] for t in terminals if t in ours} == {code}, (code, terminals)
        seen = {e["node"]["terminal"]["terminalId"] for e in data["transactions"]["edges"]}
        assert {ours[t] for t in seen if t in ours} <= {code}, (code, seen)
        assert all(
            e["node"]["cardNumber"][:6] == tenants[code].division_code for e in data["transactions"]["edges"]
        )
    assert sum(1 for kind, *_ in answers if kind == "upload") == BATCHES * len(TENANTS)

    # Each schema holds exactly its own terminal's taps.
    with connection.cursor() as cur:
        for code, tenant in tenants.items():
            cur.execute(
                f'SELECT terminal_id, count(*) FROM "{tenant.schema_name}".terminals_transaction'
                " WHERE terminal_id = ANY(%s) GROUP BY 1",
                [list(ours)],
            )
            assert dict(cur.fetchall()) == {sims[code].terminal_id: BATCHES * TAPS}, code

    # The database's own account of every tap stored: in the schema of the tenant whose terminal took it, the
    # statement's current_schema() that same schema, on at most the pool's two server processes, which each
    # stored taps of several tenants.
    schema_of = {sims[code].terminal_id: tenant.schema_name for code, tenant in tenants.items()}
    assert len(probes) == BATCHES * TAPS * len(TENANTS)
    for pid, table_schema, current, terminal_id in probes:
        assert table_schema == current == schema_of[terminal_id], (pid, table_schema, current, terminal_id)
    tenants_of_pid: dict[int, set[str]] = defaultdict(set)
    for pid, table_schema, _, _ in probes:
        tenants_of_pid[pid].add(table_schema)
    print(f"server processes and the tenants whose taps each stored: {dict(tenants_of_pid)}")
    assert len(tenants_of_pid) <= 2, tenants_of_pid
    assert max(len(s) for s in tenants_of_pid.values()) >= 2, tenants_of_pid

    # PgBouncer: many clients, at most two server connections, all of them poisoned along the way.
    assert poisoned[0] > 10
    assert peak["servers"] <= 2 and peak["clients"] > 2, peak
    assert len([s for s in servers if s["database"] == name]) <= 2, servers
    (db_stats,) = [s for s in stats if s["database"] == name]
    assert db_stats["total_xact_count"] > 3 * len(answers), db_stats

    # The cycles cleared as on a direct connection.
    for day, summary in zip(DAYS, summaries, strict=True):
        cycle = ClearingCycle.objects.get(agreement__network__code="gba", business_date=day)
        assert cycle.state == "settled" == summary["state"]
        assert Journal.objects.filter(cycle=cycle).count() == 2
        assert sum(p["net_fen"] for p in summary["positions"]) == 0
