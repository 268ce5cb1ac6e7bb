"""Terminal batches over loopback HTTP to gunicorn, beside the same batches ingested in-process, in one run.

    .venv/bin/python benchmarks/http_ingest.py [--taps 200000] [--clients 4] [--gunicorn "<gunicorn options>"]

The tenants, terminals and signed 500-tap batches are benchmarks/ingest.py's (``prepare``), made before any
clock starts in a database of their own (``citycard_bench_http``), which is then copied
(``citycard_bench_http_wire``, ``CREATE DATABASE … TEMPLATE``) so both runs start from the same state:

(a) in-process: the upload view called with each body (RequestFactory), 3 uploads in flight, as
    benchmarks/ingest.py (a), in the first database;
(h) over HTTP: gunicorn started as a subprocess on 127.0.0.1 against the copy, with the demo's and the
    Dockerfile's settings (citycard/platform/gunicorn_conf.py), or ``--gunicorn``'s, and ``--clients`` client processes
    on this machine, each with one persistent HTTP/1.1 connection (http.client), taking batches in turn.

Printed: taps/s, batch latency p50/p95/p99, the error rate (any answer but 200, or no answer), the load
average before and after, and (h)/(a).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import pickle
import shlex
import socket
import subprocess
import sys
import tempfile
import time

from _harness import ROOT, bench_env, reset_database, stop_embedded

BENCH_DB = "citycard_bench_http"
WIRE_DB = "citycard_bench_http_wire"
HOST = "hangzhou.localhost"
# What the demo (citycard demo) and the image (infra/Dockerfile) serve with.
GUNICORN_SETTINGS = "--config python:citycard.platform.gunicorn_conf"


# --- children: in the bench database ---------------------------------------------------------------


def child_prepare(args) -> None:
    """Make the tenants, terminals and bodies; write the bodies to ``args.bodies``."""
    import django

    django.setup()
    from benchmarks.ingest import prepare

    _hangzhou, bodies, sent_dups = prepare(args)
    with open(args.bodies, "wb") as out:
        pickle.dump({"bodies": bodies, "sent_dups": sent_dups}, out)


def child_in_process(args) -> None:
    """(a): the bodies through the upload view in-process, 3 in flight; prints one JSON line."""
    import gc
    from concurrent.futures import ThreadPoolExecutor

    import django

    django.setup()
    from django.db import connection
    from django.test import RequestFactory

    from citycard.platform.models import Tenant
    from citycard.tenants.terminals import views

    with open(args.bodies, "rb") as made:
        bodies = pickle.load(made)["bodies"]
    hangzhou = Tenant.objects.get(code="hangzhou")
    factory = RequestFactory()

    def upload(body: bytes) -> int:
        request = factory.post(
            "/terminal/v1/batches", data=body, content_type="application/json", HTTP_HOST=HOST
        )
        request.tenant = hangzhou
        connection.set_tenant(hangzhou)
        return views.batch_upload(request).status_code

    gc.collect()
    gc.freeze()
    w0 = time.perf_counter()
    with ThreadPoolExecutor(3) as pool:
        statuses = list(pool.map(upload, bodies))
    wall = time.perf_counter() - w0
    refused = sum(1 for s in statuses if s != 200)
    print(json.dumps({"wall": wall, "refused": refused}))


def clone_database(env: dict[str, str], source: str, target: str) -> None:
    """``target`` dropped and made again as a copy of ``source`` (nobody may be connected to it)."""
    code = (
        "import django; django.setup();\n"
        "from django.db import connection\n"
        "from psycopg2 import connect\n"
        "s = connection.settings_dict; connection.get_connection_params()\n"
        "c = connect(dbname='postgres', user=s['USER'] or None, host=s['HOST'] or None, port=s['PORT'] or None,"
        " password=s.get('PASSWORD') or None); c.autocommit = True\n"
        f"c.cursor().execute('DROP DATABASE IF EXISTS {target} WITH (FORCE)')\n"
        f"c.cursor().execute('CREATE DATABASE {target} TEMPLATE {source}')\n"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True)


def count_stored(env: dict[str, str]) -> int:
    code = (
        "import django; django.setup();\n"
        "from django.db import connection\n"
        "from citycard.platform.models import Tenant\n"
        "connection.set_tenant(Tenant.objects.get(code='hangzhou'))\n"
        "from citycard.tenants.terminals.models import Transaction\n"
        "print(Transaction.objects.count())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    return int(out.stdout.split()[-1])


# --- the HTTP side ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_serving(port: int, server: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"gunicorn exited with {server.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz", headers={"Host": "localhost"})
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("gunicorn did not answer /healthz within 60 s")


def client(port: int, bodies: list[bytes], mine: list[int], ready, go, results) -> None:
    """One terminal-side process: one persistent connection, its share of the batches in order."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    headers = {"Host": HOST, "Content-Type": "application/json"}
    done: list[tuple[int, float, int, bytes]] = []  # (batch, seconds, status, answer)
    ready.wait()
    go.wait()
    for n in mine:
        t0 = time.perf_counter()
        try:
            conn.request("POST", "/terminal/v1/batches", body=bodies[n], headers=headers)
            response = conn.getresponse()
            answer = response.read()
            status = response.status
            if response.will_close:
                conn.close()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()  # http.client connects again on the next request
            status, answer = 0, repr(exc).encode()
        done.append((n, time.perf_counter() - t0, status, answer))
    results.put(done)


def machine_cpu() -> tuple[float, float]:
    """(busy, all) CPU seconds of every core of the machine since boot (/proc/stat)."""
    with open("/proc/stat") as stat:
        ticks = [int(v) for v in stat.readline().split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - ticks[3] - ticks[4]) / hz, sum(ticks) / hz


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def over_http(args, settings: str, env: dict[str, str], bodies: list[bytes]) -> dict:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "citycard.platform.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        *shlex.split(settings),
    ]
    log = open(os.path.join(args.workdir, "gunicorn.log"), "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_serving(port, server)
        # Every worker thread's first request (imports, its database connection): not timed.
        warm = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for _ in range(20):
            warm.request("GET", "/terminal/v1/hotlist", headers={"Host": HOST})
            warm.getresponse().read()
        warm.close()
        ctx = mp.get_context("fork")
        ready, go, results = ctx.Barrier(args.clients + 1), ctx.Event(), ctx.Queue()
        shares = [list(range(i, len(bodies), args.clients)) for i in range(args.clients)]
        procs = [
            ctx.Process(target=client, args=(port, bodies, share, ready, go, results)) for share in shares
        ]
        for proc in procs:
            proc.start()
        ready.wait()
        load_before = os.getloadavg()
        cpu0 = machine_cpu()
        w0 = time.perf_counter()
        go.set()
        done = [row for _ in procs for row in results.get()]
        wall = time.perf_counter() - w0
        cpu1 = machine_cpu()
        load_after = os.getloadavg()
        for proc in procs:
            proc.join()
    finally:
        server.terminate()
        server.wait(30)
        log.close()
    accepted = duplicates = 0
    errors = [(n, status, answer[:200]) for n, _, status, answer in done if status != 200]
    for _, _, status, answer in done:
        if status == 200:
            ack = json.loads(answer)["payload"]
            accepted += ack["accepted"]
            duplicates += ack["duplicates"]
    return {
        "wall": wall,
        "latencies": [seconds for _, seconds, _, _ in done],
        "errors": errors,
        "accepted": accepted,
        "duplicates": duplicates,
        "load": (load_before, load_after),
        "cpu": (cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--taps", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--terminals", type=int, default=200)
    parser.add_argument("--clients", type=int, default=4, help="client processes, one connection each")
    parser.add_argument(
        "--gunicorn",
        action="append",
        help=f"gunicorn's options (default: {GUNICORN_SETTINGS}); again for another run of (h), on a fresh copy",
    )
    parser.add_argument("--no-in-process", action="store_true", help="skip (a)")
    parser.add_argument("--child", choices=["prepare", "in-process"], help=argparse.SUPPRESS)
    parser.add_argument("--bodies", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "prepare":
        return child_prepare(args)
    if args.child == "in-process":
        return child_in_process(args)

    env = bench_env(BENCH_DB)
    wire_env = bench_env(WIRE_DB)
    reset_database(env, BENCH_DB)
    with tempfile.TemporaryDirectory(prefix="citycard-http-bench-") as workdir:
        args.workdir = workdir
        bodies_file = os.path.join(workdir, "bodies.pickle")
        passed = sys.argv[1:]
        try:
            t0 = time.perf_counter()
            subprocess.run(
                [sys.executable, __file__, *passed, "--child", "prepare", "--bodies", bodies_file],
                env=env,
                check=True,
            )
            with open(bodies_file, "rb") as made:
                prepared = pickle.load(made)
            bodies = prepared["bodies"]
            print(
                f"prepared {len(bodies)} signed batches x {args.batch} taps, {args.terminals} terminals"
                f" ({prepared['sent_dups']} resent duplicates) in {time.perf_counter() - t0:.1f}s"
            )
            taps = len(bodies) * args.batch
            a = None
            if not args.no_in_process:
                load0 = os.getloadavg()[0]
                out = subprocess.run(
                    [sys.executable, __file__, *passed, "--child", "in-process", "--bodies", bodies_file],
                    env=env,
                    check=True,
                    capture_output=True,
                    text=True,
                )
                got = json.loads(out.stdout.strip().splitlines()[-1])
                a = taps / got["wall"]
                print(
                    f"(a) in-process     {a:>10,.0f} taps/s   wall {got['wall']:7.2f}s   refused {got['refused']}"
                    f"   load average {load0:.2f} -> {os.getloadavg()[0]:.2f}"
                )
            for settings in args.gunicorn or [GUNICORN_SETTINGS]:
                clone_database(env, BENCH_DB, WIRE_DB)
                h = over_http(args, settings, wire_env, bodies)
                rate = taps / h["wall"]
                ms = [s * 1000 for s in h["latencies"]]
                before, after = h["load"]
                print(f"(h) over HTTP: gunicorn {settings}; {args.clients} client processes, keep-alive")
                print(
                    f"(h) over HTTP      {rate:>10,.0f} taps/s   wall {h['wall']:7.2f}s"
                    f"   batch p50 {percentile(ms, 0.5):.1f} ms"
                    f"  p95 {percentile(ms, 0.95):.1f} ms  p99 {percentile(ms, 0.99):.1f} ms"
                    f"   errors {len(h['errors'])}/{len(ms)} ({len(h['errors']) / len(ms):.2%})"
                    f"   load average {before[0]:.2f} -> {after[0]:.2f}"
                )
                busy, total = h["cpu"]
                print(
                    f"    machine cpu busy {busy:.2f} of {total:.2f} core-seconds ({os.cpu_count()} cores):"
                    f" {busy / len(bodies) * 1000:.1f} ms per batch, server and clients together"
                )
                stored = count_stored(wire_env)
                print(
                    f"    acknowledged: accepted {h['accepted']}, duplicates {h['duplicates']}; stored {stored}"
                    f" (expected {taps - prepared['sent_dups']})"
                )
                for n, status, answer in h["errors"][:5]:
                    print(f"    batch {n}: {status} {answer!r}")
                if a:
                    print(f"(h)/(a) = {rate / a:.0%}   goals: (h) >= 25,000 taps/s and >= 50% of (a)")
        finally:
            stop_embedded(env)


if __name__ == "__main__":
    main()
