"""The clearing console's pages (and a city dashboard) over a cycle of many records, each beside the bare SQL
of the same figures.

    .venv/bin/python benchmarks/console.py [--records 1000000] [--tenants 20] [--cards 2000] [--runs 20]
        [--taps 1000000]

Builds its data as benchmarks/clearing.py does (``populate``: tenants, cards, records with real TACs, 2% of
them with a broken TAC) in its own database (``citycard_bench_console``, dropped and re-created), clears the
cycle (collect, close, validate, net, settle) and then asks every console page ``--runs`` times through
Django's test client as a signed-in clearing clerk: p50 and p95 of the server time per page (the whole
request through the middleware, templates included), against p50 of the page's figures read with bare SQL
(the same reads — a settled cycle's totals and counts from its bilateral positions and the partial index of
its rejections, as the pages read them — without the ORM, the middleware or a template). Goal: every page
≤ 300 ms. ``--reuse`` measures the pages again over the database the last run built. The first city's
terminals also get ``--taps`` taps over the 30 days up to the cycle (85% own cards, 12% roaming, 3% held), and
its dashboard is asked over 30 and 90 days, beside the bare SQL that counts those taps per day and routing.
The machine's 1-minute load average is printed before the pages and beside each (a shared machine's load
moves the figures and their baselines alike). With ``--participants 300`` the exceptions page is also asked
per reason (and its third page), per issuer, and per issuer and reason.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BENCH_DB = "citycard_bench_console"
GOAL_MS = 300


def _sibling(name: str):
    """benchmarks/<name>.py as a module: loaded by path, since this folder is kept off the import path
    (benchmarks/graphql.py would shadow the graphql package) and the pool's processes import this file."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _worker_init() -> None:
    import django

    django.setup()


def _collect(tenant_code: str, now) -> None:
    from citycard.interop.services.messages import outbox_collect
    from citycard.platform.models import Tenant

    outbox_collect(tenant=Tenant.objects.get(code=tenant_code), now=now)


def _issuer_validate(job: dict) -> dict:
    from citycard.interop.services.validation import issuer_validate

    return issuer_validate(**job)


def _reconciliation_packed(job: dict) -> dict:
    from citycard.interop.services.reconciliation import reconciliation_packed

    return reconciliation_packed(**job)


def _count(seen: list[str], execute, sql, params, many, context):
    seen.append(sql)
    return execute(sql, params, many, context)


# The bench taps of the city's terminals: ``--taps`` of them over the 30 days up to the business day, 85% the
# city's own cards, 12% roaming cards, 3% held; stored with one INSERT … SELECT (as the ingestion would
# store them, without its checks: the dashboard reads only what is stored).
_TAPS_INSERT = """
INSERT INTO terminals_transaction (tapped_at, received_at, batch_id, idx, terminal_id, terminal_seq, card_no,
    issuer, card_counter, amount_fen, balance_before_fen, balance_after_fen, service, route, tac, terminal_no,
    algorithm, kind, status, card_scheme, categories, passes, fare_rule_id, card_trip, rule_version,
    hotlist_version, acquirer, routing, issuer_tenant, network, outbox_state)
SELECT t.at, t.at, 1, 0, 'BENCH-' || (g %% 200), g, t.issuer || lpad((g %% 100000)::text, 13, '0'),
    t.issuer, g, 200 + (g %% 7) * 100, 100000, 100000 - 200 - (g %% 7) * 100, 'bus', '', '00',
    '000000000001', 4, 'purchase', 'accepted', '', '{}', '{}', '', '', 1, 0, %(acquirer)s, t.routing, '', '', ''
FROM generate_series(1, %(taps)s) AS g,
LATERAL (SELECT %(end)s::timestamptz - (g * %(span)s::float8 / %(taps)s) * interval '1 second' AS at,
    CASE WHEN g %% 100 < 85 THEN 'own' WHEN g %% 100 < 97 THEN 'roaming' ELSE 'held' END AS routing,
    CASE WHEN g %% 100 < 85 THEN %(division)s ELSE '330400' END AS issuer) AS t
"""


def _taps_load(city, *, taps: int, until) -> None:
    """``taps`` bench taps in ``city``'s schema over the 30 Beijing days up to ``until`` (kept between runs
    with the same count: ``--reuse`` does not load them again)."""
    import datetime as dt

    from django.db import connection
    from django_tenants.utils import tenant_context

    from citycard.tenants.terminals.partitions import partitions_ensure
    from citycard.terminal_kit.beijing import BEIJING

    end = dt.datetime.combine(until + dt.timedelta(days=1), dt.time(), tzinfo=BEIJING)
    start = end - dt.timedelta(days=30)
    with tenant_context(city):
        with connection.cursor() as cur:
            cur.execute("SELECT count(*) FROM terminals_transaction WHERE terminal_id LIKE 'BENCH-%%'")
            (stored,) = cur.fetchone()
        if stored == taps:
            return
        begun = time.perf_counter()
        partitions_ensure({(d.year, d.month) for d in (start.astimezone(BEIJING), end.astimezone(BEIJING))})
        with connection.cursor() as cur:
            cur.execute("DELETE FROM terminals_transaction WHERE terminal_id LIKE 'BENCH-%%'")
            cur.execute(
                _TAPS_INSERT,
                {
                    "acquirer": city.code,
                    "division": city.division_code,
                    "taps": taps,
                    "end": end - dt.timedelta(seconds=1),
                    "span": (end - start).total_seconds() - 1,
                },
            )
            cur.execute("ANALYZE terminals_transaction")
        print(f"{taps:,} taps stored in {city.code}'s schema in {time.perf_counter() - begun:.1f} s")


def _load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def child(args) -> None:
    import datetime as dt
    import functools
    import multiprocessing

    import django

    django.setup()
    from django.db import connection
    from django.test import Client

    from citycard.interop.models import ClearingCycle
    from citycard.interop.services import cycles
    from citycard.platform.models import Role, Tenant, User
    from citycard.platform.services import user_create

    shanghai = dt.timezone(dt.timedelta(hours=8))
    day = dt.date(2026, 11, 21)
    now = dt.datetime(2026, 11, 22, 5, tzinfo=shanghai)
    start = time.perf_counter()
    if args.reuse:  # the database of the last run, its cycle settled: only the pages are measured again
        tenants = list(Tenant.objects.exclude(schema_name="public").order_by("division_code"))
        network = ClearingCycle.objects.filter(business_date=day).values_list(
            "agreement__network__code", flat=True
        )[0]
        cycle = cycles.cycle_get_or_create(network_code=network, service="transit", business_date=day)
        assert cycle.state == "settled", "--reuse needs the settled cycle of an earlier run"
        User.objects.filter(username__startswith="bench-").delete()
    else:
        tenants, _sealing, network = _sibling("clearing").populate(args)
        pool = multiprocessing.get_context("spawn").Pool(args.workers, initializer=_worker_init)
        pool.starmap(_collect, [(tenant.code, now) for tenant in tenants])
        cycle = cycles.cycle_get_or_create(network_code=network, service="transit", business_date=day)
        for step in (
            cycles.cycle_close,
            functools.partial(
                cycles.cycle_validate, issuers_map=functools.partial(pool.map, _issuer_validate)
            ),
            cycles.cycle_net,
            functools.partial(
                cycles.cycle_settle, files_map=functools.partial(pool.map, _reconciliation_packed)
            ),
        ):
            cycle = step(cycle=cycle, now=now, actor="bench")
        pool.close()
        pool.join()
    connection.set_schema_to_public()
    with connection.cursor() as cur:
        cur.execute("ANALYZE")
        cur.execute("SELECT count(*) FROM interop_clearingrecord WHERE cycle_id = %s", [cycle.pk])
        (records,) = cur.fetchone()
        cur.execute(
            "SELECT issuer, acquirer FROM interop_bilateralposition WHERE cycle_id = %s"
            " ORDER BY records DESC LIMIT 1",
            [cycle.pk],
        )
        issuer, acquirer = cur.fetchone()
        cur.execute(
            "SELECT record_id FROM interop_clearingrecord WHERE cycle_id = %s AND issuer = %s AND acquirer = %s"
            " ORDER BY record_id OFFSET %s LIMIT 1",
            [cycle.pk, issuer, acquirer, 5000],
        )
        (deep,) = cur.fetchone() or ("",)
        cur.execute("SELECT record_id FROM interop_clearingrecord WHERE cycle_id = %s LIMIT 1", [cycle.pk])
        (one,) = cur.fetchone()
    print(
        f"{records:,} records in {cycle.label}"
        + ("" if args.reuse else f", cleared in {time.perf_counter() - start:.1f} s")
    )

    city = tenants[0]
    _taps_load(city, taps=args.taps, until=day + dt.timedelta(days=1))
    connection.set_schema_to_public()
    clerk = Client()
    clerk.force_login(
        user_create(username="bench-clerk", role=Role.CLEARING_STAFF, password="a-long-password")
    )
    admin = Client()
    admin.force_login(
        user_create(
            username="bench-admin", role=Role.CITY_ADMIN, tenant_code=city.code, password="a-long-password"
        )
    )
    cycle_url = f"/console/cycles/{network}/transit/{day}/"
    cell = f"issuer={issuer}&acquirer={acquirer}&status=valid"
    ids = [cycle.pk]
    pages = [
        # name, client, host, URL, the bare SQL of the page's figures (statement, parameters)
        (
            "today",
            clerk,
            "localhost",
            f"/console/?date={day + dt.timedelta(days=1)}",
            [
                # A settled cycle's totals: its bilateral positions (valid) and its rejections.
                (
                    "SELECT cycle_id, sum(records), sum(amount_fen) FROM interop_bilateralposition"
                    " WHERE cycle_id = ANY(%s) GROUP BY 1",
                    [ids],
                ),
                (
                    "SELECT cycle_id, count(*), sum(amount_fen) FROM interop_clearingrecord"
                    " WHERE cycle_id = ANY(%s) AND status = 'rejected' GROUP BY 1",
                    [ids],
                ),
                ("SELECT count(*) FROM interop_dispute WHERE state = 'open'", []),
            ],
        ),
        (
            "cycle",
            clerk,
            "localhost",
            cycle_url,
            [
                (
                    "SELECT cycle_id, sum(records), sum(amount_fen) FROM interop_bilateralposition"
                    " WHERE cycle_id = ANY(%s) GROUP BY 1",
                    [ids],
                ),
                (
                    "SELECT cycle_id, count(*), sum(amount_fen) FROM interop_clearingrecord"
                    " WHERE cycle_id = ANY(%s) AND status = 'rejected' GROUP BY 1",
                    [ids],
                ),
                ("SELECT * FROM interop_bilateralposition WHERE cycle_id = %s", [cycle.pk]),
                ("SELECT * FROM interop_netposition WHERE cycle_id = %s", [cycle.pk]),
                ("SELECT * FROM interop_settlementinstruction WHERE cycle_id = %s", [cycle.pk]),
                (
                    "SELECT participant, sha256, state FROM interop_reconciliationfile WHERE cycle_id = %s",
                    [cycle.pk],
                ),
                (
                    "SELECT reason, count(*), sum(amount_fen) FROM interop_clearingrecord"
                    " WHERE cycle_id = %s AND status = 'rejected' GROUP BY 1",
                    [cycle.pk],
                ),
            ],
        ),
        (
            "exceptions",
            clerk,
            "localhost",
            f"{cycle_url}exceptions/",
            [
                (
                    "SELECT issuer, acquirer, reason, count(*), sum(amount_fen) FROM interop_clearingrecord"
                    " WHERE cycle_id = %s AND status = 'rejected' GROUP BY 1, 2, 3",
                    [cycle.pk],
                )
            ],
        ),
        (
            "exceptions (a reason)",
            clerk,
            "localhost",
            f"{cycle_url}exceptions/?reason=tac_invalid",
            [
                (
                    "SELECT issuer, count(*), sum(amount_fen) FROM interop_clearingrecord"
                    " WHERE cycle_id = %s AND status = 'rejected' AND reason = 'tac_invalid' GROUP BY 1",
                    [cycle.pk],
                )
            ],
        ),
        (
            "exceptions (an issuer)",
            clerk,
            "localhost",
            f"{cycle_url}exceptions/?issuer={issuer}",
            [
                (
                    "SELECT reason, acquirer, count(*), sum(amount_fen) FROM interop_clearingrecord"
                    " WHERE cycle_id = %s AND status = 'rejected' AND issuer = %s GROUP BY 1, 2",
                    [cycle.pk, issuer],
                )
            ],
        ),
        (
            "exceptions (a reason, p. 3)",
            clerk,
            "localhost",
            f"{cycle_url}exceptions/?reason=tac_invalid&page=3",
            [
                (
                    "SELECT issuer, count(*), sum(amount_fen) FROM interop_clearingrecord"
                    " WHERE cycle_id = %s AND status = 'rejected' AND reason = 'tac_invalid' GROUP BY 1",
                    [cycle.pk],
                )
            ],
        ),
        (
            "exceptions (issuer+reason)",
            clerk,
            "localhost",
            f"{cycle_url}exceptions/?issuer={issuer}&reason=tac_invalid",
            [
                (
                    "SELECT acquirer, count(*), sum(amount_fen) FROM interop_clearingrecord"
                    " WHERE cycle_id = %s AND status = 'rejected' AND issuer = %s AND reason = 'tac_invalid'"
                    " GROUP BY 1",
                    [cycle.pk, issuer],
                )
            ],
        ),
        (
            "records (a cell)",
            clerk,
            "localhost",
            f"{cycle_url}records/?{cell}",
            [
                (
                    "SELECT * FROM interop_clearingrecord WHERE cycle_id = %s AND issuer = %s AND acquirer = %s"
                    " AND status <> 'rejected' ORDER BY record_id LIMIT 501",
                    [cycle.pk, issuer, acquirer],
                ),
                (
                    "SELECT records FROM interop_bilateralposition WHERE cycle_id = %s AND issuer = %s"
                    " AND acquirer = %s",
                    [cycle.pk, issuer, acquirer],
                ),
            ],
        ),
        (
            "records (page 11)",
            clerk,
            "localhost",
            f"{cycle_url}records/?{cell}&after={deep}",
            [
                (
                    "SELECT * FROM interop_clearingrecord WHERE cycle_id = %s AND issuer = %s AND acquirer = %s"
                    " AND status <> 'rejected' AND record_id > %s ORDER BY record_id LIMIT 501",
                    [cycle.pk, issuer, acquirer, deep],
                ),
                (
                    "SELECT records FROM interop_bilateralposition WHERE cycle_id = %s AND issuer = %s"
                    " AND acquirer = %s",
                    [cycle.pk, issuer, acquirer],
                ),
            ],
        ),
        (
            "records (all)",
            clerk,
            "localhost",
            f"{cycle_url}records/",
            [
                (
                    "SELECT * FROM interop_clearingrecord WHERE cycle_id = %s ORDER BY record_id LIMIT 501",
                    [cycle.pk],
                ),
                ("SELECT sum(records) FROM interop_bilateralposition WHERE cycle_id = %s", [cycle.pk]),
                (
                    "SELECT count(*) FROM interop_clearingrecord WHERE cycle_id = %s AND status = 'rejected'",
                    [cycle.pk],
                ),
            ],
        ),
        (
            "record",
            clerk,
            "localhost",
            f"/console/records/{one}/",
            [("SELECT * FROM interop_clearingrecord WHERE record_id = %s", [one])],
        ),
        (
            "charts (90 days)",
            clerk,
            "localhost",
            f"/console/charts/?days=90&date={day + dt.timedelta(days=1)}&participant={issuer}",
            [
                (
                    "SELECT c.business_date, sum(b.records), sum(b.amount_fen) FROM interop_bilateralposition b"
                    " JOIN interop_clearingcycle c ON c.id = b.cycle_id WHERE c.business_date >= %s GROUP BY 1",
                    [day - dt.timedelta(days=89)],
                ),
                (
                    "SELECT c.business_date, r.reason, count(*) FROM interop_clearingrecord r"
                    " JOIN interop_clearingcycle c ON c.id = r.cycle_id WHERE c.business_date >= %s"
                    " AND r.status = 'rejected' GROUP BY 1, 2",
                    [day - dt.timedelta(days=89)],
                ),
                (
                    "SELECT c.business_date, n.participant, sum(n.net_fen) FROM interop_netposition n"
                    " JOIN interop_clearingcycle c ON c.id = n.cycle_id WHERE c.business_date >= %s GROUP BY 1, 2",
                    [day - dt.timedelta(days=89)],
                ),
            ],
        ),
        (
            "disputes",
            clerk,
            "localhost",
            "/console/disputes/?state=all",
            [("SELECT * FROM interop_dispute", [])],
        ),
        *(
            (
                f"dashboard {days}d ({city.code})",
                admin,
                f"{city.code}.localhost",
                f"/dashboard/?date={day + dt.timedelta(days=1)}&days={days}",
                [
                    # Taps per Beijing day and routing over the window (the figures of the taps chart).
                    (
                        "SELECT (tapped_at AT TIME ZONE 'Asia/Shanghai')::date, routing, count(*),"
                        f" sum(amount_fen) FROM {city.schema_name}.terminals_transaction"
                        " WHERE tapped_at >= %s AND tapped_at < %s GROUP BY 1, 2",
                        [
                            dt.datetime.combine(
                                day + dt.timedelta(days=2 - days), dt.time(), tzinfo=shanghai
                            ),
                            dt.datetime.combine(day + dt.timedelta(days=2), dt.time(), tzinfo=shanghai),
                        ],
                    ),
                    (
                        f"SELECT envelope FROM {city.schema_name}.exchange_inboxmessage"
                        " WHERE kind IN ('clearing.reconciliation', 'clearing.exceptions')",
                        [],
                    ),
                    (
                        f"SELECT scheme_id, state, count(*) FROM {city.schema_name}.cards_card GROUP BY 1, 2",
                        [],
                    ),
                ],
            )
            for days in (30, 90)
        ),
    ]
    # The machine may be shared: its load (1-minute average, `uptime`'s first figure) is printed before the
    # pages and beside each, so a slow figure can be told from a busy machine.
    print(f"load average {_load()} on {os.cpu_count()} cores before the pages")
    print(
        f"{'page':<26}{'queries':>8}{'p50 ms':>9}{'p95 ms':>9}{'SQL p50':>9}{'× SQL':>7}{'load':>6}"
        f"   goal ≤ {GOAL_MS} ms"
    )
    worst = 0.0
    for name, client, host, url, sql in pages:
        queries: list[str] = []
        with connection.execute_wrapper(functools.partial(_count, queries)):
            response = client.get(url, HTTP_HOST=host)
        assert response.status_code == 200, (url, response.status_code)
        connection.set_schema_to_public()
        served, bare = [], []
        for _ in range(args.runs):
            begun = time.perf_counter()
            client.get(url, HTTP_HOST=host)
            served.append(time.perf_counter() - begun)
            connection.set_schema_to_public()
            with connection.cursor() as cur:
                begun = time.perf_counter()
                for statement, params in sql:
                    cur.execute(statement, params)
                    cur.fetchall()
                bare.append(time.perf_counter() - begun)
        p50, p95, sql50 = (
            statistics.median(served) * 1000,
            _quantile(served, 0.95) * 1000,
            statistics.median(bare) * 1000,
        )
        worst = max(worst, p95)
        mark = "ok" if p95 <= GOAL_MS else "OVER"
        print(
            f"{name:<26}{len(queries):>8}{p50:>9.1f}{p95:>9.1f}{sql50:>9.1f}{p50 / max(sql50, 0.001):>7.1f}"
            f"{_load():>6}   {mark}"
        )
    print(f"load average {_load()} after the pages")
    print(f"worst p95 {worst:.1f} ms: {'goal met' if worst <= GOAL_MS else 'goal NOT met'} (≤ {GOAL_MS} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000, help="records in the cycle (default 1M)")
    parser.add_argument("--participants", "--tenants", dest="participants", type=int, default=20)
    parser.add_argument("--cards", type=int, default=2000)
    parser.add_argument(
        "--workers", type=int, default=2, help="processes collecting and validating (default 2)"
    )
    parser.add_argument("--runs", type=int, default=20, help="requests per page (default 20)")
    parser.add_argument(
        "--taps",
        type=int,
        default=1_000_000,
        help="taps of the first city's terminals over 30 days, read by its dashboard (default 1M)",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="measure the pages again over the last run's database (kept), without building it again",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    harness = _sibling("_harness")
    if not args.reuse:
        harness.run_in_own_database(script=__file__, database=BENCH_DB)
        return
    env = harness.bench_env(BENCH_DB)
    try:
        subprocess.run([sys.executable, __file__, "--child", *sys.argv[1:]], env=env, check=True)
    finally:
        harness.stop_embedded(env)


if __name__ == "__main__":
    sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != HERE)]
    main()
