"""A full transit clearing cycle over many roaming records, step by step, beside a bare GROUP BY.

    .venv/bin/python benchmarks/clearing.py [--records 1000000] [--participants 20] [--cards 2000] [--workers 2]
    .venv/bin/python benchmarks/clearing.py --participants 300 --records 1000000 --cards 300   # a national network

Runs in its own database (``citycard_bench_clearing``, dropped and re-created) on the embedded PostgreSQL,
or on the server DATABASE_URL names. ``--participants`` cities (``--tenants`` is the same), each a tenant;
every city's cards roam on every other city's buses. Up to the yrd cities the package data names, they are
yrd cities in the yrd network; beyond, a national network (``tunion``, created for the run) of every city the
package data names and, past those, bench cities with made-up GB/T 2260-shaped codes (printed). Setup (not
timed as part of the cycle): tenants, the agreement, ``--cards`` active cards per issuer in its card table,
and the records with real TACs (SM4 under the development issuer keys), 2% of them with a broken TAC. Then,
timed:

* outbox     — each acquirer seals its records into signed envelopes (5,000 records each) in its outbox
               (what ingestion does batch by batch; shown for scale, not part of the cycle);
* collect    — interop collects every outbox (over ``--workers`` processes, one job per tenant): envelope
               checks, idempotency, cycle assignment, the records inserted from the envelope JSON;
* close, validate (each issuer in its own schema: card facts, TAC, counter; the issuers in parallel over
  ``--workers`` processes, ``validation.issuer_validate`` per issuer), net (SQL), settle (ledger,
  instructions, reconciliation files into the inboxes, their text written over the same processes; the
  writing of the files' text is shown apart as ``  files written``);
* GROUP BY   — ``SELECT issuer, acquirer, sum(amount_fen) FROM interop_clearingrecord GROUP BY 1, 2``
               over the same rows, for the netting goal (netting ≤ 1.5× this);
* the console's cycle page (``--page-runs`` requests, default 20; 0 skips it) as a signed-in clearing
  clerk through Django's test client: p50/p95 server time, its queries and size, beside the bare SQL of
  its matrix (the heat map's points aggregated by PostgreSQL). Goal ≤ 300 ms.

Goals: the cycle (collect..settle) ≤ 60 s at 20 cities, ≤ 90 s at 300; netting ≤ 1.5× the GROUP BY.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def populate(args):
    """The setup, not timed as part of the cycle: tenants, the agreement, cards, and every acquirer's records
    sealed into its outbox (timed as ``outbox``). Returns (tenants, seconds spent sealing, network). Shared with
    benchmarks/console.py, which clears the same data and then reads it through the console."""
    import datetime as dt
    import random

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction
    from django_tenants.utils import tenant_context

    from citycard.interop.services import agreements
    from citycard.platform import services
    from citycard.platform.models import Tenant
    from citycard.tenants.cards.services import schemes_seed
    from citycard.tenants.exchange.services import outbox_put_clearing_records
    from citycard.tenants.terminals.simulate import card_number
    from citycard.terminal_kit.card.crypto import Algorithm, diversify, tac_compute

    shanghai_tz = dt.timezone(dt.timedelta(hours=8))
    call_command("migrate", interactive=False, verbosity=0)
    services.platform_bootstrap()
    network, divisions = _bench_divisions(args.participants)
    tenants = []
    for division in divisions:
        code = f"c{division}"
        tenant = Tenant.objects.filter(code=code).first() or services.tenant_create(
            code=code, division_code=division, actor="bench"
        )
        services.network_join(
            network_code=network, tenant_code=code, joined_on=dt.date(2020, 1, 1), actor="bench"
        )
        tenants.append(tenant)
    agreements.agreement_set(
        network_code=network,
        service="transit",
        valid_from=dt.date(2020, 1, 1),
        issuer_fee_bps=50,
        network_fee_bps=10,
        actor="bench",
    )
    # Cards: --cards active transit cards per issuer, straight into its card table.
    cards = {}
    for tenant in tenants:
        numbers = [card_number(tenant.division_code, n) for n in range(1, args.cards + 1)]
        cards[tenant.code] = numbers
        with tenant_context(tenant):
            schemes_seed(actor="bench")
            with connection.cursor() as cur:
                cur.execute(
                    "INSERT INTO cards_card (card_no, scheme_id, is_main, state, applied_at, activated_at, fee_fen,"
                    " source) SELECT n, (SELECT id FROM cards_cardscheme WHERE code = '03'), false, 'active',"
                    " now(), now(), 0, 'bench' FROM unnest(%s::text[]) AS n ON CONFLICT DO NOTHING",
                    [numbers],
                )
    connection.set_schema_to_public()
    from citycard.platform.keys import tenant_card_tac_master

    masters = {t.code: tenant_card_tac_master(tenant=t) for t in tenants}
    keys = {n: diversify(masters[code], n, Algorithm.SM4) for code, ns in cards.items() for n in ns}
    rng = random.Random(11)
    per_acquirer = args.records // len(tenants)
    counters: dict[str, int] = {}
    print(
        f"{len(tenants)} tenants in {network}, {per_acquirer * len(tenants):,} records, {args.cards} cards per issuer"
    )

    t_outbox = 0.0
    tx = 0
    for acquirer in tenants:
        others = [t for t in tenants if t.pk != acquirer.pk]
        records = []
        for _ in range(per_acquirer):
            issuer = rng.choice(others)
            card = rng.choice(cards[issuer.code])
            counters[card] = counters.get(card, 0) + 1
            tx += 1
            when = dt.datetime(2026, 11, 21, 6, 0, tzinfo=shanghai_tz) + dt.timedelta(
                seconds=rng.randrange(72_000)
            )
            amount = rng.choice((100, 150, 200, 200, 300, 400))
            seq = tx % 2**31
            tac = tac_compute(
                keys[card],
                amount=amount,
                terminal_id=bytes.fromhex("320100000001"),
                terminal_seq=seq,
                date=bytes.fromhex(when.strftime("%Y%m%d")),
                time=bytes.fromhex(when.strftime("%H%M%S")),
                alg=Algorithm.SM4,
            ).hex()
            if rng.random() < 0.02:
                tac = "00000000"
            records.append(
                {
                    "acquirer": acquirer.code,
                    "issuer": issuer.code,
                    "network": network,
                    "source_tx_id": tx,
                    "batch_id": "bench",
                    "terminal_id": "BUS-1",
                    "terminal_seq": seq,
                    "card_no": card,
                    "card_counter": counters[card],
                    "amount_fen": amount,
                    "tapped_at": when.isoformat(),
                    "service": "bus",
                    "tac": tac,
                    "terminal_no": "320100000001",
                    "algorithm": 4,
                }
            )
        start = time.perf_counter()
        with tenant_context(acquirer), transaction.atomic():
            for i in range(0, len(records), 5000):
                outbox_put_clearing_records(
                    records[i : i + 5000], "bench", now=dt.datetime(2026, 11, 21, 23, tzinfo=shanghai_tz)
                )
        t_outbox += time.perf_counter() - start
    connection.set_schema_to_public()
    del keys
    return tenants, t_outbox, network


NATIONAL = "tunion"


def _bench_divisions(count: int) -> tuple[str, list[str]]:
    """(network, the cities' division codes): the yrd cities of the package data while they suffice (the
    20-city runs before stay comparable); else a national network of every city the package data names,
    completed with bench cities whose codes are made up in the GB/T 2260 shape (province + an unused
    prefecture number + 00), added to this process's reference list only and said so."""
    import csv

    from citycard.platform.divisions import Division, reference_divisions
    from citycard.platform.models import RoamingNetwork

    with open(ROOT / "citycard/platform/data/divisions.csv", encoding="utf-8") as fh:
        rows = [row for row in csv.DictReader(fh) if row["kind"] == "city"]
    yrd = [row["division_code"] for row in rows if row["division_code"][:2] in {"31", "32", "33", "34"}]
    if count <= len(yrd):
        return "yrd", yrd[:count]
    # Mainland cities only (Hong Kong and Macao clear in their own schemes).
    cities = [row["division_code"] for row in rows if row["division_code"][0] in "123456"]
    made_up = []
    known = reference_divisions()
    provinces = sorted({code[:2] for code in cities} | {"13", "14", "15", "21", "22", "23", "36", "37", "41"})
    number = 1
    while len(cities) + len(made_up) < count:
        for province in provinces:
            code = f"{province}{number:02d}00"
            if code not in known and len(cities) + len(made_up) < count:
                known[code] = Division(
                    code=code,
                    name_zh=f"测试市{code}",
                    name_en=f"Bench city {code}",
                    province=province,
                    kind="city",
                    parent_code=None,
                )
                made_up.append(code)
        number += 1
    RoamingNetwork.objects.update_or_create(
        code=NATIONAL,
        defaults={
            "name_zh": "交通联合（全国）",
            "name_en": "T-Union, national (bench)",
            "eligible_prefixes": ["1", "2", "3", "4", "5", "6"],
        },
    )
    print(
        f"national network {NATIONAL}: {len(cities)} cities of the package data"
        f" + {len(made_up)} bench cities with made-up codes ({', '.join(made_up[:3])}…)"
        if made_up
        else f"national network {NATIONAL}: {count} cities of the package data"
    )
    return NATIONAL, (cities + made_up)[:count]


def child(args) -> None:
    import datetime as dt
    import io

    shanghai_tz = dt.timezone(dt.timedelta(hours=8))
    day = dt.date(2026, 11, 21)
    tenants, t_outbox, network = populate(args)  # sets Django up
    from django.db import connection

    from citycard.interop.services import cycles

    profiler = None
    if os.environ.get("BENCH_PROFILE"):
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    sql_times: dict[str, list[float]] = {}
    wrapper = connection.execute_wrapper(_timed_sql(sql_times)) if os.environ.get("BENCH_SQL") else None
    if wrapper is not None:
        wrapper.__enter__()
    now = dt.datetime(2026, 11, 22, 5, tzinfo=shanghai_tz)
    # The outboxes are collected, the issuers validated and the reconciliation files written in parallel,
    # one job per tenant, in --workers processes started (and connected) before the clock runs, as Celery
    # workers would be; handed out one at a time, as a broker does (in chunks of ~P/8 jobs, one process
    # could be left with a whole chunk while the other idles).
    import functools
    import multiprocessing

    pool = multiprocessing.get_context("spawn").Pool(args.workers, initializer=_worker_init)
    pool.map(_worker_ready, range(args.workers))
    timings = {"outbox (acquirers sign)": t_outbox}
    start = time.perf_counter()
    pool.starmap(_collect, [(tenant.code, now) for tenant in tenants], chunksize=1)
    timings["collect"] = time.perf_counter() - start
    cycle = cycles.cycle_get_or_create(network_code=network, service="transit", business_date=day)
    validate = functools.partial(
        cycles.cycle_validate, issuers_map=functools.partial(pool.map, _issuer_validate, chunksize=1)
    )
    files_written = []

    def write_files(jobs):
        begun = time.perf_counter()
        try:
            return pool.map(_reconciliation_packed, jobs, chunksize=1)
        finally:
            files_written.append((len(jobs), time.perf_counter() - begun))

    settle = functools.partial(cycles.cycle_settle, files_map=write_files)
    for name, step in (
        ("close", cycles.cycle_close),
        ("validate", validate),
        ("net", cycles.cycle_net),
        ("settle", settle),
    ):
        if name == "net":
            with connection.cursor() as cur:
                group_by_before_net = _bare_group_by(cur, cycle.pk)
        start = time.perf_counter()
        cycle = step(cycle=cycle, now=now, actor="bench")
        timings[name] = time.perf_counter() - start
        if name == "settle":
            (files, seconds) = files_written[0]
            timings[f"  files written ({files})"] = seconds
            timings["  instructions, storing, delivery"] = timings["settle"] - seconds
    pool.close()
    pool.join()
    if wrapper is not None:
        wrapper.__exit__(None, None, None)
        print("\n".join(_slowest(sql_times)))
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(os.environ["BENCH_PROFILE"])
    connection.set_schema_to_public()
    with connection.cursor() as cur:
        cur.execute("ANALYZE interop_clearingrecord")
        best = min(_bare_group_by(cur, cycle.pk) for _ in range(3))
        # The cycle is settled: every record not rejected is valid (validation writes only the rejections).
        cur.execute(
            "SELECT count(*), count(*) FILTER (WHERE status <> 'rejected') FROM interop_clearingrecord"
        )
        total, valid = cur.fetchone()
        cur.execute("SELECT sum(net_fen), count(*) FROM interop_netposition WHERE cycle_id = %s", [cycle.pk])
        net_sum, positions = cur.fetchone()
    cycle_total = sum(
        v for k, v in timings.items() if k != "outbox (acquirers sign)" and not k.startswith("  ")
    )
    cur = connection.cursor()
    cur.execute("SELECT count(*) FROM interop_reconciliationfile WHERE cycle_id = %s", [cycle.pk])
    (files,) = cur.fetchone()
    cur.execute("SELECT count(*) FROM interop_bilateralposition WHERE cycle_id = %s", [cycle.pk])
    (cells,) = cur.fetchone()
    out = io.StringIO()
    out.write(
        f"records {total:,} (valid {valid:,}), {len(tenants)} participants, {cells:,} matrix cells,"
        f" {positions} net positions, Σ net = {net_sum}, {files} reconciliation files\n"
    )
    for name, seconds in timings.items():
        out.write(f"{name:<26}{seconds:9.2f} s\n")
    goal = 60 if len(tenants) <= 20 else 90
    out.write(f"{'cycle (collect..settle)':<26}{cycle_total:9.2f} s   goal ≤ {goal} s\n")
    out.write(
        f"{'bare GROUP BY':<26}{best:9.2f} s   (best of 3 after the cycle;"
        f" {group_by_before_net:.2f} s just before netting)\n"
    )
    out.write(f"{'net / GROUP BY':<26}{timings['net'] / best:9.2f} ×   goal ≤ 1.5×\n")
    print(out.getvalue(), end="", flush=True)
    if args.page_runs:
        _cycle_page(cycle, runs=args.page_runs)


def _cycle_page(cycle, *, runs: int) -> None:
    """The console's cycle page of the settled cycle, ``runs`` times as a signed-in clearing clerk: p50/p95
    server time (the whole request: middleware, session, queries, template), its queries and size, beside
    the bare SQL of its matrix (the heat map's points, as the page reads them)."""
    import statistics

    from django.db import connection
    from django.test import Client

    from citycard.interop.selectors import MATRIX_LIVE_SQL
    from citycard.platform.models import Role, User
    from citycard.platform.services import user_create

    User.objects.filter(username="bench-clerk").delete()
    clerk = Client()
    clerk.force_login(
        user_create(username="bench-clerk", role=Role.CLEARING_STAFF, password="a-long-password")
    )
    url = f"/console/cycles/{cycle.agreement.network.code}/transit/{cycle.business_date}/"
    queries: list[str] = []
    with connection.execute_wrapper(lambda execute, sql, *rest: queries.append(sql) or execute(sql, *rest)):
        response = clerk.get(url, HTTP_HOST="localhost")
    assert response.status_code == 200, response.status_code
    served, bare = [], []
    for _ in range(runs):
        begun = time.perf_counter()
        clerk.get(url, HTTP_HOST="localhost")
        served.append(time.perf_counter() - begun)
        connection.set_schema_to_public()
        with connection.cursor() as cur:
            begun = time.perf_counter()
            cur.execute(MATRIX_LIVE_SQL, {"cycle": cycle.pk, "largest": 10})
            cur.fetchall()
            bare.append(time.perf_counter() - begun)
    ordered = sorted(served)
    p50, p95 = (
        statistics.median(served) * 1000,
        ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] * 1000,
    )
    print(
        f"{'cycle page':<26}p50 {p50:7.1f} ms  p95 {p95:7.1f} ms   goal ≤ 300 ms   {len(queries)} queries,"
        f" {len(response.content) / 1e6:.2f} MB; its matrix's bare SQL p50 {statistics.median(bare) * 1000:.1f} ms"
        f" ({runs} requests)"
    )


def _bare_group_by(cur, cycle_id: int) -> float:
    """Seconds of the bare GROUP BY of the cycle's records, fetched: what netting is measured against."""
    start = time.perf_counter()
    cur.execute(
        "SELECT issuer, acquirer, sum(amount_fen) FROM interop_clearingrecord WHERE cycle_id = %s"
        " GROUP BY issuer, acquirer",
        [cycle_id],
    )
    cur.fetchall()
    return time.perf_counter() - start


def _timed_sql(sql_times: dict[str, list[float]]):
    """An execute wrapper (BENCH_SQL) adding each statement's seconds to ``sql_times``, by its first words."""

    def timed_sql(execute, sql, params, many, context):
        begun = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            sql_times.setdefault(" ".join(sql.split())[:90], []).append(time.perf_counter() - begun)

    return timed_sql


def _slowest(sql_times: dict[str, list[float]]) -> list[str]:
    """The 15 statements that took longest in all, a line each."""
    ranked = sorted(sql_times.items(), key=lambda kv: -sum(kv[1]))[:15]
    return [f"{sum(times):7.2f} s {len(times):5d}× {sql}" for sql, times in ranked]


def _worker_init() -> None:
    import django

    django.setup()
    if os.environ.get("BENCH_SQL"):
        # Each pool process times its statements too, printed (the 15 slowest) when the pool closes.
        from multiprocessing import util

        from django.db import connection

        sql_times: dict[str, list[float]] = {}
        wrapper = connection.execute_wrapper(_timed_sql(sql_times))
        wrapper.__enter__()  # held by report() below: a dropped generator would unwrap at once

        def report() -> None:
            lines = [f"pool process {os.getpid()}: {sum(map(len, sql_times.values()))} statements"]
            lines += _slowest(sql_times)
            print("\n".join(lines), flush=True)
            wrapper.__exit__(None, None, None)

        util.Finalize(None, report, exitpriority=100)
    if os.environ.get("BENCH_PROFILE"):
        # Each pool process profiles its jobs too, written beside the main one as <file>.<pid> when the
        # pool closes.
        import cProfile
        from multiprocessing import util

        profiler = cProfile.Profile()
        profiler.enable()
        path = f"{os.environ['BENCH_PROFILE']}.{os.getpid()}"
        util.Finalize(None, lambda: (profiler.disable(), profiler.dump_stats(path)), exitpriority=100)


def _issuer_validate(job: dict) -> dict:
    from citycard.interop.services.validation import issuer_validate

    return issuer_validate(**job)


def _reconciliation_packed(job: dict) -> dict:
    from citycard.interop.services.reconciliation import reconciliation_packed

    return reconciliation_packed(**job)


def _collect(tenant_code: str, now) -> None:
    from citycard.interop.services.messages import outbox_collect
    from citycard.platform.models import Tenant

    outbox_collect(tenant=Tenant.objects.get(code=tenant_code), now=now)


def _worker_ready(_n: int) -> None:
    from django.db import connection

    connection.ensure_connection()


def main(argv: list[str] | None = None) -> None:
    """The run (``argv``: this script's arguments; benchmarks/national.py passes its own)."""
    # Imported here, not at the top: the pool's spawned processes run this file again (as __mp_main__) on
    # the sys.path _harness left, without this folder. It puts the project first and this folder off
    # sys.path (benchmarks/graphql.py would shadow the graphql package) before Django is imported.
    from _harness import CLEARING_DB, run_in_own_database

    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument(
        "--participants", "--tenants", dest="participants", type=int, default=20, help="cities (default 20)"
    )
    parser.add_argument(
        "--page-runs", type=int, default=20, help="requests of the console's cycle page (default 20; 0: none)"
    )
    parser.add_argument("--cards", type=int, default=2000)
    parser.add_argument(
        "--workers", type=int, default=2, help="processes validating issuers in parallel (default 2)"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return
    run_in_own_database(script=__file__, database=CLEARING_DB, argv=argv)


if __name__ == "__main__":
    main()
