"""A full transit clearing cycle over many roaming records, step by step, beside a bare GROUP BY.

    .venv/bin/python benchmarks/clearing.py [--records 1000000] [--tenants 20] [--cards 2000] [--workers 2]

Runs in its own database (``citycard_bench_clearing``, dropped and re-created) on the embedded PostgreSQL,
or on the server DATABASE_URL names. ``--tenants`` yrd cities; every city's cards roam on every other
city's buses. Setup (not timed as part of the cycle): tenants, the agreement, ``--cards`` active cards per
issuer in its card table, and the records with real TACs (SM4 under the development issuer keys), 2% of
them with a broken TAC. Then, timed:

* outbox     — each acquirer seals its records into signed envelopes (5,000 records each) in its outbox
               (what ingestion does batch by batch; shown for scale, not part of the cycle);
* collect    — interop collects every outbox (over ``--workers`` processes, one job per tenant): envelope
               checks, idempotency, cycle assignment, the records inserted from the envelope JSON;
* close, validate (each issuer in its own schema: card facts, TAC, counter; the issuers in parallel over
  ``--workers`` processes, ``validation.issuer_validate`` per issuer), net (SQL), settle (ledger,
  instructions, reconciliation files into the inboxes, their text written over the same processes);
* GROUP BY   — ``SELECT issuer, acquirer, sum(amount_fen) FROM interop_clearingrecord GROUP BY 1, 2``
               over the same rows, for the netting goal (netting ≤ 1.5× this).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_DB = "citycard_bench_clearing"


def populate(args):
    """The setup, not timed as part of the cycle: tenants, the agreement, cards, and every acquirer's records
    sealed into its outbox (timed as ``outbox``). Returns (tenants, seconds spent sealing). Shared with
    benchmarks/console.py, which clears the same data and then reads it through the console."""
    import csv
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
    divisions = []
    with open(ROOT / "citycard/platform/data/divisions.csv", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["kind"] == "city" and row["division_code"][:2] in {"31", "32", "33", "34"}:
                divisions.append(row["division_code"])
    divisions = divisions[: args.tenants]
    tenants = []
    for division in divisions:
        code = f"c{division}"
        tenant = Tenant.objects.filter(code=code).first() or services.tenant_create(
            code=code, division_code=division, actor="bench"
        )
        services.network_join(
            network_code="yrd", tenant_code=code, joined_on=dt.date(2020, 1, 1), actor="bench"
        )
        tenants.append(tenant)
    agreements.agreement_set(
        network_code="yrd",
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
    print(f"{len(tenants)} tenants, {per_acquirer * len(tenants):,} records, {args.cards} cards per issuer")

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
                    "network": "yrd",
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
    return tenants, t_outbox


def child(args) -> None:
    import datetime as dt
    import io

    shanghai_tz = dt.timezone(dt.timedelta(hours=8))
    day = dt.date(2026, 11, 21)
    tenants, t_outbox = populate(args)  # sets Django up
    from django.db import connection

    from citycard.interop.services import cycles

    profiler = None
    if os.environ.get("BENCH_PROFILE"):
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    sql_times: dict[str, list[float]] = {}

    def timed_sql(execute, sql, params, many, context):
        begun = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            sql_times.setdefault(" ".join(sql.split())[:90], []).append(time.perf_counter() - begun)

    wrapper = connection.execute_wrapper(timed_sql) if os.environ.get("BENCH_SQL") else None
    if wrapper is not None:
        wrapper.__enter__()
    now = dt.datetime(2026, 11, 22, 5, tzinfo=shanghai_tz)
    # The outboxes are collected, the issuers validated and the reconciliation files written in parallel,
    # one job per tenant, in --workers processes started (and connected) before the clock runs, as Celery
    # workers would be.
    import functools
    import multiprocessing

    pool = multiprocessing.get_context("spawn").Pool(args.workers, initializer=_worker_init)
    pool.map(_worker_ready, range(args.workers))
    timings = {"outbox (acquirers sign)": t_outbox}
    start = time.perf_counter()
    pool.starmap(_collect, [(tenant.code, now) for tenant in tenants])
    timings["collect"] = time.perf_counter() - start
    cycle = cycles.cycle_get_or_create(network_code="yrd", service="transit", business_date=day)
    validate = functools.partial(
        cycles.cycle_validate, issuers_map=functools.partial(pool.map, _issuer_validate)
    )
    settle = functools.partial(
        cycles.cycle_settle, files_map=functools.partial(pool.map, _reconciliation_packed)
    )
    for name, step in (
        ("close", cycles.cycle_close),
        ("validate", validate),
        ("net", cycles.cycle_net),
        ("settle", settle),
    ):
        if name == "net":
            with connection.cursor() as cur:
                start = time.perf_counter()
                cur.execute(
                    "SELECT issuer, acquirer, sum(amount_fen) FROM interop_clearingrecord WHERE cycle_id = %s"
                    " GROUP BY issuer, acquirer",
                    [cycle.pk],
                )
                cur.fetchall()
                group_by_before_net = time.perf_counter() - start
        start = time.perf_counter()
        cycle = step(cycle=cycle, now=now, actor="bench")
        timings[name] = time.perf_counter() - start
    pool.close()
    pool.join()
    if wrapper is not None:
        wrapper.__exit__(None, None, None)
        for sql, times in sorted(sql_times.items(), key=lambda kv: -sum(kv[1]))[:15]:
            print(f"{sum(times):7.2f} s {len(times):5d}× {sql}")
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(os.environ["BENCH_PROFILE"])
    connection.set_schema_to_public()
    with connection.cursor() as cur:
        cur.execute("ANALYZE interop_clearingrecord")
        best = None
        for _ in range(3):
            start = time.perf_counter()
            cur.execute(
                "SELECT issuer, acquirer, sum(amount_fen) FROM interop_clearingrecord WHERE cycle_id = %s"
                " GROUP BY issuer, acquirer",
                [cycle.pk],
            )
            cur.fetchall()
            elapsed = time.perf_counter() - start
            best = elapsed if best is None else min(best, elapsed)
        # The cycle is settled: every record not rejected is valid (validation writes only the rejections).
        cur.execute(
            "SELECT count(*), count(*) FILTER (WHERE status <> 'rejected') FROM interop_clearingrecord"
        )
        total, valid = cur.fetchone()
        cur.execute("SELECT sum(net_fen), count(*) FROM interop_netposition WHERE cycle_id = %s", [cycle.pk])
        net_sum, positions = cur.fetchone()
    cycle_total = sum(v for k, v in timings.items() if k != "outbox (acquirers sign)")
    out = io.StringIO()
    out.write(f"records {total:,} (valid {valid:,}), {positions} net positions, Σ net = {net_sum}\n")
    for name, seconds in timings.items():
        out.write(f"{name:<26}{seconds:9.2f} s\n")
    out.write(f"{'cycle (collect..settle)':<26}{cycle_total:9.2f} s   goal ≤ 60 s\n")
    out.write(
        f"{'bare GROUP BY':<26}{best:9.2f} s   (best of 3 after the cycle;"
        f" {group_by_before_net:.2f} s just before netting)\n"
    )
    out.write(f"{'net / GROUP BY':<26}{timings['net'] / best:9.2f} ×   goal ≤ 1.5×\n")
    print(out.getvalue(), end="")


def _worker_init() -> None:
    import django

    django.setup()
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


def _reset_database(env: dict[str, str]) -> None:
    code = (
        "import django; django.setup();\n"
        "from django.db import connection\n"
        "from psycopg2 import connect\n"
        "s = connection.settings_dict; connection.get_connection_params()\n"
        "c = connect(dbname='postgres', user=s['USER'] or None, host=s['HOST'] or None, port=s['PORT'] or None,"
        " password=s.get('PASSWORD') or None); c.autocommit = True\n"
        f"c.cursor().execute('DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)')\n"
        f"c.cursor().execute('CREATE DATABASE {BENCH_DB}')\n"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--cards", type=int, default=2000)
    parser.add_argument(
        "--workers", type=int, default=2, help="processes validating issuers in parallel (default 2)"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    env = dict(os.environ)
    env.setdefault("CITYCARD_DATA_DIR", str(ROOT / ".citycard" / "bench"))
    if env.get("DATABASE_URL"):
        from urllib.parse import urlsplit, urlunsplit

        env["DATABASE_URL"] = urlunsplit(urlsplit(env["DATABASE_URL"])._replace(path=f"/{BENCH_DB}"))
    else:
        env["CITYCARD_DB_NAME"] = BENCH_DB
    env["DJANGO_SETTINGS_MODULE"] = "citycard.platform.settings"
    _reset_database(env)
    subprocess.run([sys.executable, __file__, "--child", *sys.argv[1:]], env=env, check=True)
    if not os.environ.get("DATABASE_URL"):
        subprocess.run(
            [sys.executable, "-m", "citycard.platform.cli", "db", "stop"],
            env=env,
            capture_output=True,
            check=False,
        )


if __name__ == "__main__":
    # Not this folder: benchmarks/graphql.py would shadow the graphql package.
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    sys.path.insert(0, str(ROOT))
    main()
