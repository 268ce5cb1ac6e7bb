"""How fast the back office takes terminal batches, against raw COPY and a naive ORM loop, in one run.

    .venv/bin/python benchmarks/ingest.py [--taps 1000000] [--batch 500] [--terminals 200] [--orm-sample 10000]

Runs in its own database (``citycard_bench_ingest``, dropped and re-created) on the embedded PostgreSQL,
or on the server DATABASE_URL names. Taps are generated for 200 terminals of Hangzhou (10% roaming
cards from Jiaxing and Shanghai, 0.5% duplicates resent from the terminal's previous batch), signed
per batch with each terminal's Ed25519 key, and timed only while being ingested:

(a) the full endpoint path in-process: the upload view (RequestFactory request, real signature check,
    validation, routing, COPY, natural-key insert, checks, signed acknowledgement), one commit per batch;
(b) raw COPY of the same stored rows into the same (emptied) table, 500 rows and one commit per COPY;
(c) a naive ORM loop (``Transaction(...).save()`` per row, autocommit) on a sample of the same rows.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import re
import time

from _harness import run_in_own_database

BENCH_DB = "citycard_bench_ingest"


def prepare(args):
    """The bench database migrated, Shanghai, Hangzhou and Jiaxing in the Yangtze Delta network, Hangzhou's
    ``args.terminals`` terminals registered, and ``args.taps // args.batch`` signed batch bodies.

    Returns (Hangzhou, the bodies in sending order, the resent duplicates among their taps). Shared with
    benchmarks/http_ingest.py, which sends the same bodies over HTTP.
    """
    import datetime as dt

    from django.core.management import call_command
    from django.utils import timezone
    from django_tenants.utils import tenant_context

    from citycard.platform import services
    from citycard.platform.keys import tenant_card_tac_master
    from citycard.platform.models import Tenant
    from citycard.tenants.terminals.services import terminal_register
    from citycard.tenants.terminals.simulate import SimCard, SimTerminal, card_number
    from citycard.terminal_kit.beijing import BEIJING

    call_command("migrate", interactive=False, verbosity=0)
    services.platform_bootstrap()
    for code, division in (("shanghai", "310000"), ("hangzhou", "330100"), ("jiaxing", "330400")):
        if not Tenant.objects.filter(code=code).exists():
            services.tenant_create(code=code, division_code=division, actor="bench")
        services.network_join(network_code="yrd", tenant_code=code, actor="bench")
    hangzhou = Tenant.objects.get(code="hangzhou")

    rng = random.Random(7)
    # Own cards carry real TACs under Hangzhou's card key, so the issuer's TAC check does its full work.
    tac_masters = {"330100": tenant_card_tac_master(tenant=hangzhou)}
    terminals = [
        SimTerminal(
            f"HZ-BUS-{i:04d}",
            "hangzhou",
            route=str(1 + i % 400),
            terminal_no=f"3301{i:08d}",
            tac_masters=tac_masters,
        )
        for i in range(args.terminals)
    ]
    with tenant_context(hangzhou):
        for sim in terminals:
            terminal_register(
                terminal_id=sim.terminal_id,
                operator="杭州公交集团",
                department="transport",
                service="bus",
                route=sim.route,
                public_key=sim.public_key,
                actor="bench",
            )
    own = [SimCard(card_number("330100", i)) for i in range(1, 50_001)]
    roaming = [SimCard(card_number(d, i)) for d in ("330400", "310000") for i in range(1, 5_001)]
    previous: dict[str, list[dict]] = {}
    start = timezone.now().astimezone(BEIJING) - dt.timedelta(hours=12)

    def next_body(n: int) -> tuple[bytes, int]:
        sim = terminals[n % len(terminals)]
        taps, dups = [], 0
        earlier = previous.get(sim.terminal_id, [])
        for j in range(args.batch):
            if earlier and rng.random() < 0.005:
                taps.append(dict(rng.choice(earlier)))  # resent: a duplicate by natural key
                dups += 1
                continue
            card = rng.choice(roaming) if rng.random() < 0.10 else rng.choice(own)
            at = start + dt.timedelta(seconds=n * 5 + j * 0.01)
            taps.append(
                sim.tap(
                    card, at=at.replace(microsecond=0), amount_fen=rng.choice((100, 150, 200, 300)), rng=rng
                )
            )
        previous[sim.terminal_id] = taps
        return sim.sign(sim.payload(taps, created_at=timezone.now().astimezone(BEIJING))), dups

    sent_dups = 0
    bodies = []
    for n in range(
        args.taps // args.batch
    ):  # signed beforehand: the terminals' work is not the back office's
        body, dups = next_body(n)
        sent_dups += dups
        bodies.append(body)
    for made in (previous, own, roaming):
        made.clear()
    return hangzhou, bodies, sent_dups


def child(args) -> None:
    import django

    django.setup()
    from django.db import connection
    from django.db.models import Count
    from django.test import RequestFactory

    from citycard.tenants.terminals import views
    from citycard.tenants.terminals.models import ReviewFlag, Transaction

    hangzhou, bodies, sent_dups = prepare(args)
    factory = RequestFactory()
    profiler = None
    if os.environ.get("BENCH_PROFILE"):
        import cProfile

        profiler = cProfile.Profile()
    batches = args.taps // args.batch
    sql_times: dict[str, tuple[float, int]] = {}  # BENCH_QUERIES: statement -> (seconds, count), all batches
    accepted = duplicates = 0

    def upload(n: int) -> None:
        request = factory.post(
            "/terminal/v1/batches",
            data=bodies[n],
            content_type="application/json",
            HTTP_HOST="hangzhou.localhost",
        )
        request.tenant = hangzhou
        connection.set_tenant(hangzhou)
        if os.environ.get("BENCH_QUERIES"):
            from django.test.utils import CaptureQueriesContext

            connection.queries_log.clear()  # it keeps 9000 queries; the capture counts on positions in it
            with CaptureQueriesContext(connection) as captured:
                response = views.batch_upload(request)
            for q in captured.captured_queries:
                sql = " ".join(q["sql"].split())[:60]
                if sql.startswith("EXECUTE"):  # a prepared statement: by its names, not its parameters
                    sql = " + ".join(re.findall(r'EXECUTE "([^"]+)"', q["sql"]))[:60]
                total, count = sql_times.get(sql[:40], (0.0, 0))
                sql_times[sql[:40]] = (total + float(q["time"]), count + 1)
                if n == batches - 1:
                    print(q["time"], sql)
        else:
            response = views.batch_upload(request)
        if response.status_code != 200:
            raise SystemExit(f"batch {n} refused: {response.content[:300]!r}")
        if n % 200 == 0:
            import json

            nonlocal accepted, duplicates
            ack = json.loads(response.content)["payload"]
            accepted += ack["accepted"]
            duplicates += ack["duplicates"]

    backends: dict[int, float] = {}  # pid of each connection's server process -> its CPU seconds before

    def backend_cpu(pid: int) -> float:
        """CPU seconds the server process has used (0 if it is not on this machine)."""
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return 0.0

    def note_backend() -> None:
        with connection.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            pid = cur.fetchone()[0]
        backends.setdefault(pid, backend_cpu(pid))

    # What the benchmark made before the clock (cards, terminals, the signed bodies) is no server's
    # garbage: frozen, the collector never scans it again (BENCH_GC=on to leave it, for comparison).
    if os.environ.get("BENCH_GC") != "on":
        import gc

        gc.collect()
        gc.freeze()
    w0, c0 = time.perf_counter(), time.process_time()
    if profiler is not None:
        profiler.enable()
    tenths: list[float] = []  # python cpu ms per batch over each tenth of the run (one upload at a time)
    if args.concurrency == 1:
        note_backend()
        mark, step = time.process_time(), max(batches // 10, 1)
        for n in range(batches):
            upload(n)
            if (n + 1) % step == 0:
                now_cpu = time.process_time()
                tenths.append((now_cpu - mark) / step * 1000)
                mark = now_cpu
    else:
        # Uploads in flight at once in this one process (one core of Python: the GIL), as a server's
        # threads take them; each thread has its own database connection.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(args.concurrency, initializer=note_backend) as pool:
            list(pool.map(upload, range(batches)))
    if profiler is not None:
        profiler.disable()
    ingest_wall = time.perf_counter() - w0
    ingest_cpu = time.process_time() - c0
    database_cpu = sum(backend_cpu(pid) - before for pid, before in backends.items())

    # (v) the verification stage over everything just uploaded (nothing when uploads verify inline).
    from citycard.tenants.terminals.verify import batches_verify_all

    connection.set_tenant(hangzhou)
    if profiler is not None:
        profiler.dump_stats(os.environ["BENCH_PROFILE"])
        profiler = cProfile.Profile()
        profiler.enable()
    w0, c0 = time.perf_counter(), time.process_time()
    verified = batches_verify_all(tenant=hangzhou, limit=args.verify_batches)
    verify_wall = time.perf_counter() - w0
    verify_cpu = time.process_time() - c0
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(os.environ["BENCH_PROFILE"] + ".verify")
        profiler = None
    connection.set_tenant(hangzhou)
    if profiler is not None:
        profiler.dump_stats(os.environ["BENCH_PROFILE"])
    if sql_times:
        print(f"SQL per batch, mean over {batches} batches (COPY and COMMIT are not captured):")
        for sql, (total, count) in sorted(sql_times.items(), key=lambda kv: -kv[1][0]):
            print(f"  {total / batches * 1000:7.2f} ms  x{count / batches:.0f}  {sql}")
        print(f"  {sum(t for t, _ in sql_times.values()) / batches * 1000:7.2f} ms  total captured")
    stored = Transaction.objects.count()
    flag_counts = dict(
        ReviewFlag.objects.values_list("code").annotate(n=Count("id")).values_list("code", "n")
    )
    taps_total = batches * args.batch

    # (b) the same rows, raw COPY, same chunk size, one commit per chunk.
    columns = [f.column for f in Transaction._meta.concrete_fields]
    dump = io.StringIO()
    with connection.cursor() as cur:
        cur.cursor.copy_expert(
            f"COPY (SELECT {', '.join(columns)} FROM terminals_transaction) TO STDOUT", dump
        )
    lines = dump.getvalue().splitlines(keepends=True)
    sample = list(Transaction.objects.order_by("?")[: args.orm_sample])
    chunks = ["".join(lines[i : i + args.batch]) for i in range(0, len(lines), args.batch)]
    with connection.cursor() as cur:
        cur.execute("TRUNCATE terminals_transaction")
    copy_wall = 0.0
    for chunk in chunks:
        w0 = time.perf_counter()
        with connection.cursor() as cur:
            cur.cursor.copy_expert(
                f"COPY terminals_transaction ({', '.join(columns)}) FROM STDIN", io.StringIO(chunk)
            )
        connection.commit() if not connection.get_autocommit() else None
        copy_wall += time.perf_counter() - w0

    # (c) naive ORM: one save() per row, autocommit.
    with connection.cursor() as cur:
        cur.execute("TRUNCATE terminals_transaction")
    w0 = time.perf_counter()
    for row in sample:
        row.pk = None
        row.save(force_insert=True)
    orm_wall = time.perf_counter() - w0

    a = taps_total / ingest_wall
    b = len(lines) / copy_wall
    c = len(sample) / orm_wall
    from django.conf import settings

    print(
        f"taps generated {taps_total}  batches {batches} x {args.batch}  terminals {args.terminals}"
        f"  concurrency {args.concurrency}  TERMINAL_VERIFY={settings.TERMINAL_VERIFY}"
    )
    print(
        f"stored {stored}  resent duplicates {sent_dups}  (sampled acks: accepted {accepted}, duplicates {duplicates})"
    )
    print(f"review flags {flag_counts or 'none'}")
    print(
        f"(a) endpoint path   {a:>10,.0f} taps/s   wall {ingest_wall:7.2f}s  python cpu {ingest_cpu:7.2f}s "
        f"({taps_total / ingest_cpu:,.0f} taps per cpu-second)"
    )
    if verified.taps:
        v = verified.taps / verify_wall
        print(
            f"(v) verification  {v:>10,.0f} taps/s   wall {verify_wall:7.2f}s  python cpu {verify_cpu:7.2f}s "
            f"({verified.batches} batches, {verified.flags} flags, {args.verify_batches} batches per run)"
        )
        print(
            f"(a)+(v)           {taps_total / (ingest_wall + verify_wall):>10,.0f} taps/s   (one after the other)"
        )
    if database_cpu:
        print(
            f"    database server cpu {database_cpu:7.2f}s ({taps_total / database_cpu:,.0f} taps per cpu-second) over"
            f" {len(backends)} connection(s); per 500-tap batch: python {ingest_cpu / batches * 1000:.1f} ms,"
            f" database {database_cpu / batches * 1000:.1f} ms"
        )
    if tenths:
        print("    python cpu ms per batch, by tenth of the run: " + " ".join(f"{t:.1f}" for t in tenths))
    print(f"(b) raw COPY        {b:>10,.0f} taps/s   wall {copy_wall:7.2f}s  ({len(lines)} rows)")
    print(f"(c) naive ORM save  {c:>10,.0f} taps/s   wall {orm_wall:7.2f}s  ({len(sample)} rows)")
    print(f"(b)/(a) = {b / a:.2f}x   (a)/(c) = {a / c:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--taps", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--terminals", type=int, default=200)
    parser.add_argument("--orm-sample", type=int, default=10_000)
    parser.add_argument(
        "--concurrency", type=int, default=3, help="uploads in flight at once (threads of this one process)"
    )
    parser.add_argument("--verify-batches", type=int, default=40, help="batches per verification run")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    run_in_own_database(script=__file__, database=BENCH_DB)


if __name__ == "__main__":
    main()
