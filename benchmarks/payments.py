"""How fast a provider's daily statement is reconciled against the ledger (渠道对账), for each provider's format.

    .venv/bin/python benchmarks/payments.py [--lines 1000000] [--providers wechat,alipay,unionpay,bank]

For each provider: a day of ``--lines`` top-ups through its channel is in the ledger (orders paid and
credited, written in bulk for the benchmark); the provider's statement of that day in its own format —
WeChat Pay's trade bill (CSV, backquoted fields, summary rows), Alipay's zipped GBK detail CSV with its
footers, UnionPay's zipped fixed-width transaction file, the card bank's ``H|D|T`` records — written by the
sandbox's writer, carries the same payments except a few: 0.1 % never credited here (missing notification),
0.1 % of another amount, 0.1 % the ledger has and the statement lacks (短款) and 0.1 % the ledger never saw
(长款). Timed: ``statement_reconcile`` on the file's bytes (framing read, lines loaded with COPY and
converted in SQL, totals checked, the one joining INSERT of the differences, the 长款 to suspense, the
fees posted, the commit). Beside it, in the same run and database: a bare SQL join of the same lines (a
plain table) to the orders. Goal (docs/benchmarks.md): ≤ 30 s for 1,000,000 lines, every format.
"""

from __future__ import annotations

import argparse

from _harness import run_in_own_database

BENCH_DB = "citycard_bench_payments"


def child(args) -> None:
    import datetime as dt
    import time

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django_tenants.utils import tenant_context

    from citycard.platform import services
    from citycard.platform.models import Tenant
    from citycard.tenants.payments import services as payments
    from citycard.tenants.payments.models import ReconException
    from citycard.tenants.payments.protocols import alipay, bank, rsa_keypair_pem, unionpay, wechat
    from citycard.terminal_kit.beijing import BEIJING

    call_command("migrate", interactive=False, verbosity=0)
    services.platform_bootstrap()
    if not Tenant.objects.filter(code="hangzhou").exists():
        services.tenant_create(code="hangzhou", division_code="330100", actor="bench")
    n = args.lines
    day = dt.date(2026, 11, 21)
    start = dt.datetime.combine(day, dt.time(), tzinfo=BEIJING)
    writers = {
        "wechat": lambda rows: wechat.bill_write(rows, app_id="wxhz", merchant_id="1900000109"),
        "alipay": lambda rows: alipay.bill_write(rows, pid="2088102177846880", day=day),
        "unionpay": lambda rows: unionpay.file_write(rows, merchant_id="777290058110048", day=day),
        "bank": lambda rows: bank.file_write(rows, merchant_id="330400BK0001", day=day),
    }
    results = []
    with tenant_context(Tenant.objects.get(code="hangzhou")):
        private, _ = rsa_keypair_pem()
        _, provider_public = rsa_keypair_pem()
        for provider in args.providers.split(","):
            prefix = provider[0].upper()
            channel = payments.channel_configure(
                code=provider, provider=provider, name=provider, merchant_id="1900000109", app_id="wxhz",
                gateway_url="https://gateway.example", notify_url=f"https://hangzhou.example/payments/notify/{provider}",
                private_key_pem=private, provider_public_key_pem=provider_public, secret="k" * 32, actor="bench",
            )  # fmt: skip
            t0 = time.perf_counter()
            with connection.cursor() as cur:
                cur.execute(
                    "INSERT INTO payments_topuporder (channel_id, out_trade_no, request_key, purpose, card_no,"
                    " amount_fen, state, provider_trade_no, paid_fen, payment_params, created_at, paid_at,"
                    " credited_at, settled_by, actor)"
                    " SELECT %s, %s || lpad(i::text, 31, '0'), %s || i, 'topup', '3301000100000000049',"
                    " 100 + i %% 50000, CASE WHEN i %% 1000 = 1 THEN 'created' ELSE 'paid' END,"
                    " '42' || lpad(i::text, 19, '0'),"
                    " 100 + i %% 50000, '{}'::jsonb, %s + (i %% 86400) * interval '1 second',"
                    " %s + (i %% 86400) * interval '1 second', %s + (i %% 86400) * interval '1 second',"
                    " 'notification', 'bench' FROM generate_series(1, %s) i",
                    [channel.pk, prefix, f"bench-{provider}-", start, start, start, n],
                )
                cur.execute("ANALYZE payments_topuporder")
            setup_s = time.perf_counter() - t0
            rows = []
            for i in range(1, n + 1):
                if i % 1000 == 3:
                    continue  # 短款: in the ledger, not in the statement
                amount = 100 + i % 50000
                rows.append({
                    "kind": "pay", "at": start + dt.timedelta(seconds=i % 86400), "transaction_id": f"42{i:019d}",
                    "out_trade_no": f"{prefix}{i:031d}", "amount_fen": amount + (1 if i % 1000 == 2 else 0),
                    "fee_fen": amount * 60 // 10000,
                })  # fmt: skip
            for j in range(n // 1000):  # 长款: payments the ledger never saw
                rows.append({"kind": "pay", "at": start + dt.timedelta(seconds=j), "transaction_id": f"43{j:019d}",
                             "out_trade_no": f"X{j:031d}", "amount_fen": 500, "fee_fen": 3})  # fmt: skip
            t0 = time.perf_counter()
            data = writers[provider](rows)
            write_s = time.perf_counter() - t0
            del rows
            t0 = time.perf_counter()
            if args.profile:
                import cProfile
                import pstats

                with cProfile.Profile() as profile:
                    run = payments.statement_reconcile(
                        channel_code=provider, day=day, data=data, actor="bench"
                    )
                pstats.Stats(profile).sort_stats("cumulative").print_stats(25)
            else:
                run = payments.statement_reconcile(channel_code=provider, day=day, data=data, actor="bench")
            reconcile_s = time.perf_counter() - t0
            kinds = dict(
                ReconException.objects.filter(run=run)
                .values_list("kind")
                .annotate(c=django.db.models.Count("id"))
            )
            with (
                connection.cursor() as cur
            ):  # the statement's lines again, as a plain table, for the baseline
                cur.execute("DROP TABLE IF EXISTS bench_lines")
                cur.execute(
                    "CREATE TEMP TABLE bench_lines AS SELECT %s || lpad(i::text, 31, '0') AS out_trade_no,"
                    " 100 + i %% 50000 AS amount_fen FROM generate_series(1, %s) i WHERE i %% 1000 <> 3"
                    " UNION ALL SELECT 'X' || lpad(j::text, 31, '0'), 500 FROM generate_series(0, %s) j",
                    [prefix, n, n // 1000 - 1],
                )
                cur.execute("ANALYZE bench_lines")
            t0 = time.perf_counter()
            with connection.cursor() as cur:
                cur.execute(
                    "SELECT count(*) FROM bench_lines s JOIN payments_topuporder o"
                    " ON o.out_trade_no = s.out_trade_no AND o.channel_id = %s",
                    [channel.pk],
                )
                joined = cur.fetchone()[0]
            join_s = time.perf_counter() - t0
            results.append((provider, reconcile_s, join_s))
            print(
                f"{provider}: ledger {n:,} orders written in bulk in {setup_s:.1f} s; statement "
                f"{len(data) / 2**20:.0f} MiB, {run.lines:,} lines, written in {write_s:.1f} s",
                flush=True,
            )
            print(
                f"{provider}: reconcile {reconcile_s:.1f} s for {run.lines:,} lines (goal ≤ 30 s): "
                f"{run.matched:,} matched, {run.exceptions:,} differences {kinds}; fees {run.fee_fen:,} fen posted",
                flush=True,
            )
            print(
                f"{provider}: bare SQL join of the same lines to the orders {join_s:.2f} s ({joined:,} rows); "
                f"reconcile / bare join {reconcile_s / join_s:.1f}x",
                flush=True,
            )
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(f"load average during the run: {' '.join(load)}")
    for provider, reconcile_s, join_s in results:
        print(
            f"  {provider:9} reconcile {reconcile_s:6.1f} s   bare join {join_s:5.2f} s   {reconcile_s / join_s:5.1f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--providers", default="wechat,alipay,unionpay,bank", help="comma-separated")
    parser.add_argument(
        "--profile", action="store_true", help="print where the reconciliation spends its time"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
    else:
        run_in_own_database(script=__file__, database=BENCH_DB)


if __name__ == "__main__":
    main()
