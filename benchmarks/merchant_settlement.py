"""Daily merchant settlement (日结算) at city scale: every merchant settled for a Beijing day in one run.

    .venv/bin/python benchmarks/merchant_settlement.py [--merchants 10000] [--payments 1000000]

Builds a tenant with ``--merchants`` merchants (their payable accounts, contracts with fee rates of 0–100
bps) and ``--payments`` online-account payments of one day spread over them, each with its balanced
posting (built in bulk by SQL, the balance trigger off for the set-up only), plus one refund in fifty.
Each payment and refund joined its merchant's open settlement of the day when booked (as the services
do). Then times ``merchants_settle_day`` (taps booked, the open settlements locked, totals by GROUP BY,
fees with ``bps_of``, one balanced posting per merchant, balances moved, settlements closed; the deferred
balance trigger checks every settlement posting at commit) beside a bare ``GROUP BY merchant_id`` of the same
payments (the aggregation alone, nothing written). Goal (issue 24): 10,000 merchants and 1M payments
settled in ≤ 30 s. Finally checks the ledger: every posting balanced, each balance the sum of its legs.
"""

from __future__ import annotations

import argparse

from _harness import run_in_own_database

BENCH_DB = "citycard_bench_merchant_settlement"


def child(args) -> None:
    import datetime as dt
    import time

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone
    from django_tenants.utils import tenant_context

    from citycard.platform import services
    from citycard.platform.models import Tenant
    from citycard.tenants.accounts.selectors import ledger_totals
    from citycard.tenants.cards.pii import Sealer
    from citycard.tenants.merchants import services as merchants
    from citycard.terminal_kit.beijing import BEIJING

    call_command("migrate", interactive=False, verbosity=0)
    services.platform_bootstrap()
    if not Tenant.objects.filter(code="hangzhou").exists():
        services.tenant_create(code="hangzhou", division_code="330100", actor="bench")
    day = timezone.now().astimezone(BEIJING).date() - dt.timedelta(days=1)
    noon = dt.datetime.combine(day, dt.time(12), tzinfo=BEIJING)
    m, n = args.merchants, args.payments
    with tenant_context(Tenant.objects.get(code="hangzhou")):
        started = time.perf_counter()
        sealed = Sealer().seal("settlement_account", "6222020000000000000")
        key_id = Sealer().key_id
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute("SET LOCAL session_replication_role = replica")  # set-up only: no balance trigger
            cur.execute(
                # The payers: 1,000 holders allowed below zero (the bench spends without topping up).
                "INSERT INTO accounts_ledgeraccount (code, kind, cardholder_id, card_no, balance_fen, overdraft_fen,"
                " allow_negative, opened_at) SELECT 'holder:' || g, 'holder', g, '', 0, 0, true, %(at)s"
                " FROM generate_series(1, 1000) g",
                {"at": noon},
            )
            cur.execute(
                "INSERT INTO accounts_ledgeraccount (code, kind, card_no, balance_fen, overdraft_fen, allow_negative,"
                " opened_at) SELECT 'merchant:m' || g, 'merchant', '', 0, 0, true, %(at)s"
                " FROM generate_series(1, %(m)s) g",
                {"at": noon, "m": m},
            )
            cur.execute(
                "INSERT INTO merchants_merchant (code, name, licence_no, category, department, settlement_bank,"
                " settlement_account_enc, settlement_account_key_id, settlement_account_last4, fee_bps, accepted_means,"
                " state, state_reason, payable_id, onboarded_at, onboarded_by)"
                " SELECT 'm' || g, 'merchant ' || g, lpad(g::text, 18, '0'), '5999', '', 'bank', %(enc)s, %(key)s,"
                " '0000', g %% 101, ARRAY['account'], 'active', '', a.id, %(at)s, 'bench'"
                " FROM generate_series(1, %(m)s) g JOIN accounts_ledgeraccount a ON a.code = 'merchant:m' || g",
                {"enc": sealed, "key": key_id, "at": noon, "m": m},
            )
            cur.execute(
                "INSERT INTO accounts_posting (kind, idempotency_key, at, amount_fen, memo, actor)"
                " SELECT 'payment', 'merchant-pay:b' || g, %(at)s, 100 + g %% 5000, '', 'bench'"
                " FROM generate_series(1, %(n)s) g",
                {"at": noon, "n": n},
            )
            cur.execute(
                "CREATE TEMP TABLE bench_pay AS SELECT p.id AS posting_id, substr(p.idempotency_key, 15)::bigint AS g,"
                " p.amount_fen FROM accounts_posting p WHERE p.idempotency_key LIKE 'merchant-pay:b%%'"
            )
            cur.execute(
                "INSERT INTO accounts_leg (posting_id, account_id, amount_fen)"
                " SELECT b.posting_id, h.id, -b.amount_fen FROM bench_pay b"
                " JOIN accounts_ledgeraccount h ON h.code = 'holder:' || (1 + b.g %% 1000)"
                " UNION ALL SELECT b.posting_id, mm.payable_id, b.amount_fen FROM bench_pay b"
                " JOIN merchants_merchant mm ON mm.code = 'm' || (1 + b.g %% %(m)s)",
                {"m": m},
            )
            # Each merchant's open settlement of the day, which its payments joined as they were booked.
            cur.execute(
                "INSERT INTO merchants_settlement (merchant_id, day, payments, refunds, gross_fen, refunds_fen,"
                " fee_bps, fee_fen, net_fen, actor) SELECT id, %s, 0, 0, 0, 0, 0, 0, 0, '' FROM merchants_merchant",
                [day],
            )
            cur.execute(
                "INSERT INTO merchants_payment (merchant_id, means, payment_id, card_no, issuer_tenant, amount_fen,"
                " refunded_fen, at, day, posting_id, settlement_id)"
                " SELECT mm.id, 'account', 'b' || b.g, '3301000000000000000', '', b.amount_fen, 0, %(at)s, %(day)s,"
                " b.posting_id, s.id FROM bench_pay b JOIN merchants_merchant mm ON mm.code = 'm' || (1 + b.g %% %(m)s)"
                " JOIN merchants_settlement s ON s.merchant_id = mm.id AND s.day = %(day)s",
                {"at": noon, "day": day, "m": m},
            )
            # One refund in fifty: half the payment back to the payer.
            cur.execute(
                "INSERT INTO accounts_posting (kind, idempotency_key, at, amount_fen, memo, actor, reverses_id)"
                " SELECT 'refund', 'merchant-refund:r' || b.g, %(at)s, b.amount_fen / 2, '', 'bench', b.posting_id"
                " FROM bench_pay b WHERE b.g %% 50 = 0",
                {"at": noon + dt.timedelta(hours=1)},
            )
            cur.execute(
                "INSERT INTO accounts_leg (posting_id, account_id, amount_fen)"
                " SELECT r.id, l.account_id, -l.amount_fen / 2 FROM accounts_posting r"
                " JOIN accounts_leg l ON l.posting_id = r.reverses_id WHERE r.kind = 'refund'"
            )
            cur.execute(
                "INSERT INTO merchants_refund (payment_id, refund_id, amount_fen, at, day, posting_id, actor,"
                " settlement_id) SELECT p.id, 'r' || substr(r.idempotency_key, 18), r.amount_fen, r.at, %(day)s,"
                " r.id, 'bench', p.settlement_id"
                " FROM accounts_posting r JOIN merchants_payment p ON p.posting_id = r.reverses_id"
                " WHERE r.kind = 'refund'",
                {"day": day},
            )
            cur.execute(
                "UPDATE merchants_payment p SET refunded_fen = r.amount_fen FROM merchants_refund r"
                " WHERE r.payment_id = p.id"
            )
            cur.execute(
                "UPDATE accounts_ledgeraccount a SET balance_fen = s.total FROM"
                " (SELECT account_id, sum(amount_fen) AS total FROM accounts_leg GROUP BY account_id) s"
                " WHERE s.account_id = a.id"
            )
            cur.execute("SELECT count(*) FROM merchants_refund")
            refunds = cur.fetchone()[0]
        cur = connection.cursor()
        cur.execute("ANALYZE")
        print(
            f"set-up: {m:,} merchants, {n:,} payments, {refunds:,} refunds in {time.perf_counter() - started:.1f} s"
        )

        started = time.perf_counter()
        cur.execute(
            "SELECT merchant_id, count(*), sum(amount_fen) FROM merchants_payment WHERE day = %s GROUP BY merchant_id",
            [day],
        )
        groups = len(cur.fetchall())
        bare = time.perf_counter() - started
        print(f"bare GROUP BY merchant_id of the payments: {groups:,} groups in {bare:.2f} s")

        started = time.perf_counter()
        with CaptureQueriesContext(connection) as queries:
            settled = merchants.merchants_settle_day(day=day, actor="bench")
        took = time.perf_counter() - started
        print(
            f"merchants_settle_day: {len(settled):,} merchants settled in {took:.2f} s"
            f" ({took / bare:.1f}x the bare GROUP BY; goal ≤ 30 s)"
        )
        slowest = sorted(queries.captured_queries, key=lambda q: -float(q["time"]))[:4]
        print(f"{len(queries.captured_queries)} statements; the slowest:")
        for q in slowest:
            print(f"  {float(q['time']):7.2f} s  {q['sql'][:110]}")
        net = sum(s.net_fen for s in settled)
        fee = sum(s.fee_fen for s in settled)
        print(f"paid out ¥{net / 100:,.2f}, fees ¥{fee / 100:,.2f}")
        started = time.perf_counter()
        again = merchants.merchants_settle_day(day=day, actor="bench")
        print(f"run again (idempotent, nothing settled twice): {time.perf_counter() - started:.2f} s")
        assert [s.pk for s in again] == [s.pk for s in settled]
        totals = ledger_totals()
        assert totals.unbalanced_postings == 0 and totals.balances_mismatched == 0, totals
        print(f"ledger: {totals.postings:,} postings, all balanced; every balance the sum of its legs")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--merchants", type=int, default=10_000)
    parser.add_argument("--payments", type=int, default=1_000_000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    run_in_own_database(script=__file__, database=BENCH_DB)


if __name__ == "__main__":
    main()
