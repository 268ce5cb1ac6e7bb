"""The citizen-code rides' fares (电子市民码, 先乘后付) found among a city's taps: ``online_fares_book``'s read.

    .venv/bin/python benchmarks/credit_fares.py [--taps 1000000] [--rides 5000] [--runs 7]

Builds a tenant with ``--taps`` chip taps over this Beijing month and ``--rides`` citizen-code rides (fare
medium 04) among them, in one verified batch, in its own database. Then times, ``--runs`` times each (p50),
the query a booking run makes (``credit.services._ONLINE_FARES_SQL``): from the start (every code ride
read), and from a cursor 100 rides short of the last (what a run every five minutes reads), both through the
partial index of code rides (``transaction_code_rides``), beside the same query with index scans switched off
in the same run (what it costs to find the rides among every tap without the index).
"""

from __future__ import annotations

import argparse

from _harness import run_in_own_database

BENCH_DB = "citycard_bench_credit_fares"


def child(args) -> None:
    import statistics
    import time

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.utils import timezone
    from django_tenants.utils import tenant_context

    from citycard.platform import services
    from citycard.platform.models import Tenant
    from citycard.tenants.credit import services as credit
    from citycard.tenants.credit.services import _CURSOR_WINDOW, _ONLINE_FARES_SQL, CODE_FLAGS
    from citycard.tenants.terminals.models import Batch
    from citycard.tenants.terminals.partitions import partitions_ahead
    from citycard.tenants.terminals.services import terminal_register
    from citycard.tenants.terminals.simulate import SimTerminal

    call_command("migrate", interactive=False, verbosity=0)
    services.platform_bootstrap()
    if not Tenant.objects.filter(code="hangzhou").exists():
        services.tenant_create(code="hangzhou", division_code="330100", actor="bench")
    now = timezone.now()
    every = max(args.taps // max(args.rides, 1), 1)
    with tenant_context(Tenant.objects.get(code="hangzhou")):
        partitions_ahead()
        sim = SimTerminal("HZ-BENCH-1", "hangzhou", service="bus", route="B1")
        terminal = terminal_register(
            terminal_id=sim.terminal_id,
            operator="bench",
            department="transport",
            service="bus",
            route="B1",
            public_key=sim.public_key,
            actor="bench",
        )
        batch = Batch.objects.create(
            batch_id="bench-1",
            terminal=terminal,
            sha256="0" * 64,
            created_at=now,
            received_at=now,
            rule_version=1,
            hotlist_version=1,
            verified_at=now,
        )
        started = time.perf_counter()
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute(
                # ``every``-th tap a code ride; the rest chip taps, spread over the last 20 days
                "INSERT INTO terminals_transaction (tapped_at, received_at, batch_id, idx, terminal_id, terminal_seq,"
                " card_no, issuer, card_counter, amount_fen, balance_before_fen, balance_after_fen, service, route,"
                " tac, terminal_no, algorithm, kind, status, card_scheme, rule_version, hotlist_version, acquirer,"
                " routing, issuer_tenant, passes)"
                " SELECT %(now)s - (g * interval '1.7 second'), %(now)s, %(batch)s, g, 'HZ-BENCH-1', g,"
                " '33010001' || lpad((g %% 100000)::text, 11, '0'), '330100', g / 100000, 200, 10000, 9800,"
                " 'bus', 'B1', '00000000', '330100000001', 4, 'purchase', 'complete',"
                " CASE WHEN g %% %(every)s = 0 THEN '04' ELSE '01' END, 1, 1, 'hangzhou', 'own', 'hangzhou', '{}'"
                " FROM generate_series(1, %(n)s) g",
                {"now": now, "batch": batch.pk, "every": every, "n": args.taps},
            )
            cur.execute("ANALYZE terminals_transaction")
            cur.execute("SELECT count(*), max(id) FROM terminals_transaction WHERE card_scheme = '04'")
            rides, last = cur.fetchone()
        print(f"set-up: {args.taps:,} taps, {rides:,} code rides, {time.perf_counter() - started:.1f} s")
        query = _ONLINE_FARES_SQL.format(window=_CURSOR_WINDOW)

        def timed(through: int, *, index: bool) -> tuple[float, int]:
            params = {
                "key": f"{credit.ONLINE_FARE_KEY}tap:",
                "flags": sorted(CODE_FLAGS),
                "own": "own",
                "merchant": "merchant",
                "through": through,
                "pending": [],
                "since": None,
            }
            times, count = [], 0
            for _ in range(args.runs):
                with transaction.atomic(), connection.cursor() as cur:
                    if not index:
                        cur.execute("SET LOCAL enable_indexscan = off")
                        cur.execute("SET LOCAL enable_bitmapscan = off")
                    t0 = time.perf_counter()
                    cur.execute(query, params)
                    count = len(cur.fetchall())
                    times.append(time.perf_counter() - t0)
            return statistics.median(times) * 1000, count

        cursor_at = last - 100 * every
        for label, through in (("from the start", 0), ("from a cursor 100 rides back", cursor_at)):
            with_index, n1 = timed(through, index=True)
            without, n2 = timed(through, index=False)
            assert n1 == n2
            print(
                f"{label}: {n1:,} rides read in {with_index:.1f} ms through the partial index;"
                f" {without:.1f} ms without index scans ({without / with_index:.1f}×)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--taps", type=int, default=1_000_000)
    parser.add_argument("--rides", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--child", action="store_true")
    args = parser.parse_args()
    if args.child:
        child(args)
    else:
        run_in_own_database(script=__file__, database=BENCH_DB)


if __name__ == "__main__":
    main()
