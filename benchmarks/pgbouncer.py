"""The same terminal batches over HTTP to gunicorn, straight to PostgreSQL and through PgBouncer in
transaction mode, in one run; then small GraphQL-sized reads, both ways.

    .venv/bin/python benchmarks/pgbouncer.py [--taps 100000] [--clients 4] [--pool-size 4] [--reads 3000]

The batches are benchmarks/http_ingest.py's (``prepare``: benchmarks/ingest.py's tenants, terminals and signed
500-tap batches), made once in ``citycard_bench_http`` and copied before each run so both start from the same
state. gunicorn as the demo starts it (4 processes × 2 threads: 8 database clients):

(d) direct: the project's defaults (persistent connections, CONN_MAX_AGE=60; the upload's prepared
    statements; django-tenants' session ``SET search_path`` once per connection and tenant);
(p) pooled: ``DATABASE_URL`` at a PgBouncer (transaction pooling, ``--pool-size`` server connections for the 8
    clients) with ``CITYCARD_DB_POOLING=transaction`` (a connection per request, ``SET LOCAL search_path`` in
    every transaction, no prepared statements).

Then (r) reads: ``--reads`` single-row ORM reads in a tenant's schema, autocommit (each its own transaction,
so each carries its SET LOCAL when pooled), 4 threads in one process, direct and pooled.

Printed: taps/s, batch latency p50/p95/p99, errors, PgBouncer's transaction count and average wait, and
(p)/(d); reads/s both ways.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from _harness import ROOT, bench_env, reset_database, stop_embedded

from benchmarks.http_ingest import (
    BENCH_DB,
    GUNICORN_SETTINGS,
    WIRE_DB,
    clone_database,
    count_stored,
    over_http,
    percentile,
)

READS_CHILD = """
import json, sys, time
from concurrent.futures import ThreadPoolExecutor
import django
django.setup()
from django.db import connection, connections
from citycard.platform.models import Tenant
from citycard.tenants.terminals.models import Terminal
hangzhou = Tenant.objects.get(code="hangzhou")
n = int(sys.argv[1])

def work(count):
    connection.set_tenant(hangzhou)
    pks = list(Terminal.objects.values_list("pk", flat=True)[:50])
    t0 = time.perf_counter()
    for i in range(count):
        Terminal.objects.filter(pk=pks[i % len(pks)]).values_list("terminal_id", flat=True).first()
    spent = time.perf_counter() - t0
    connections.close_all()
    return spent

w0 = time.perf_counter()
with ThreadPoolExecutor(4) as pool:
    list(pool.map(work, [n // 4] * 4))
print(json.dumps({"wall": time.perf_counter() - w0, "reads": n // 4 * 4}))
"""


def server_address(env: dict[str, str]) -> tuple[str, int]:
    """Where PgBouncer finds PostgreSQL: DATABASE_URL's host, else the embedded server's socket."""
    if os.environ.get("DATABASE_URL"):
        url = urlsplit(os.environ["DATABASE_URL"])
        return url.hostname or "localhost", url.port or 5432
    sys.path.insert(0, str(ROOT))
    from citycard.platform import embedded_pg

    address = embedded_pg.ensure_running(Path(env["CITYCARD_DATA_DIR"]) / "pg")
    return address.host, address.port


def pooled_env(env: dict[str, str], bouncer, database: str) -> dict[str, str]:
    pooled = dict(env)
    url = urlsplit(os.environ.get("DATABASE_URL") or "postgres://postgres@/")
    pooled["DATABASE_URL"] = f"postgres://{url.username or 'postgres'}@127.0.0.1:{bouncer.port}/{database}"
    pooled["CITYCARD_DB_POOLING"] = "transaction"
    return pooled


def reads(env: dict[str, str], n: int) -> float:
    out = subprocess.run(
        [sys.executable, "-c", READS_CHILD, str(n)], env=env, check=True, capture_output=True, text=True
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    return got["reads"] / got["wall"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--taps", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--terminals", type=int, default=200)
    parser.add_argument("--clients", type=int, default=4, help="client processes, one connection each")
    parser.add_argument("--pool-size", type=int, default=4, help="PgBouncer's server connections")
    parser.add_argument("--reads", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=1, help="(d) and (p) alternated this many times")
    args = parser.parse_args()

    from citycard.platform.pgbouncer import PgBouncer

    env = bench_env(BENCH_DB)
    wire_env = bench_env(WIRE_DB)
    reset_database(env, BENCH_DB)
    with tempfile.TemporaryDirectory(prefix="citycard-pgb-bench-") as workdir:
        args.workdir = workdir
        bodies_file = os.path.join(workdir, "bodies.pickle")
        bouncer_dir = Path(tempfile.mkdtemp(prefix="citycard-pgbouncer-"))
        try:
            prepare = [
                *("--taps", str(args.taps), "--batch", str(args.batch), "--terminals", str(args.terminals)),
                *("--child", "prepare", "--bodies", bodies_file),
            ]
            t0 = time.perf_counter()
            subprocess.run(
                [sys.executable, str(ROOT / "benchmarks" / "http_ingest.py"), *prepare], env=env, check=True
            )
            with open(bodies_file, "rb") as made:
                prepared = pickle.load(made)
            bodies = prepared["bodies"]
            taps = len(bodies) * args.batch
            print(
                f"prepared {len(bodies)} signed batches x {args.batch} taps, {args.terminals} terminals"
                f" in {time.perf_counter() - t0:.1f}s; gunicorn {GUNICORN_SETTINGS} (4 x 2 = 8 database clients)"
            )
            host, port = server_address(env)
            bouncer = PgBouncer(
                directory=bouncer_dir, server_host=host, server_port=port, pool_size=args.pool_size
            )
            with bouncer:
                rates: dict[str, list[float]] = {"d": [], "p": []}
                for _ in range(args.rounds):
                    for mode in ("d", "p"):
                        clone_database(env, BENCH_DB, WIRE_DB)
                        run_env = wire_env if mode == "d" else pooled_env(wire_env, bouncer, WIRE_DB)
                        before = {s["database"]: s for s in bouncer.admin("SHOW STATS")}.get(WIRE_DB)
                        h = over_http(args, GUNICORN_SETTINGS, run_env, bodies)
                        rate = taps / h["wall"]
                        rates[mode].append(rate)
                        ms = [s * 1000 for s in h["latencies"]]
                        label = "direct" if mode == "d" else f"pgbouncer pool {args.pool_size}"
                        print(
                            f"({mode}) {label:<18} {rate:>10,.0f} taps/s   wall {h['wall']:6.2f}s"
                            f"   batch p50 {percentile(ms, 0.5):.1f} ms  p95 {percentile(ms, 0.95):.1f} ms"
                            f"  p99 {percentile(ms, 0.99):.1f} ms   errors {len(h['errors'])}/{len(ms)}"
                            f"   load average {h['load'][0][0]:.2f} -> {h['load'][1][0]:.2f}"
                        )
                        stored = count_stored(wire_env)
                        line = f"    stored {stored} (expected {taps - prepared['sent_dups']})"
                        if mode == "p":
                            after = {s["database"]: s for s in bouncer.admin("SHOW STATS")}[WIRE_DB]
                            xacts = int(after["total_xact_count"]) - int(
                                before["total_xact_count"] if before else 0
                            )
                            wait = int(after["total_wait_time"]) - int(
                                before["total_wait_time"] if before else 0
                            )
                            servers = [s for s in bouncer.admin("SHOW SERVERS") if s["database"] == WIRE_DB]
                            line += (
                                f"; PgBouncer: {xacts} transactions on {len(servers)} server connections,"
                                f" clients waited {wait / 1000:.0f} ms in all"
                                f" ({wait / 1000 / max(1, xacts):.2f} ms a transaction)"
                            )
                        print(line)
                        for n, status, answer in h["errors"][:5]:
                            print(f"    batch {n}: {status} {answer!r}")
                d, p = max(rates["d"]), max(rates["p"])
                print(f"(p)/(d) = {p / d:.0%} (best of {args.rounds} each)")
                direct_reads = reads(wire_env, args.reads)
                pooled_reads = reads(pooled_env(wire_env, bouncer, WIRE_DB), args.reads)
                print(
                    f"(r) reads: direct {direct_reads:,.0f}/s, pgbouncer {pooled_reads:,.0f}/s"
                    f" ({pooled_reads / direct_reads:.0%}); 4 threads, one row each, autocommit"
                )
        finally:
            shutil.rmtree(bouncer_dir, ignore_errors=True)
            stop_embedded(env)


if __name__ == "__main__":
    main()
