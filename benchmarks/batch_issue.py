"""How fast batch issuance imports cardholders with cards, against a plain COPY of the same rows.

    .venv/bin/python benchmarks/batch_issue.py [--rows 100000]

Runs in its own database (``citycard_bench_issue``, dropped and re-created) on the embedded PostgreSQL, or
on the server DATABASE_URL names. Generates a CSV of ``--rows`` cardholders of Jiaxing (valid GB 11643 ID
numbers, phones for 80%, rider categories for some) and times:

(a) ``cards_import`` of the whole file, cards created active: CSV parsing, ID check digits, eligibility,
    AES-GCM encryption of ID numbers and phones, blind indexes, COPY into staging tables, the inserts of
    cardholders, categories and cards (card numbers with Luhn), one audit entry per 5,000-row chunk;
(b) a plain ``COPY`` of the same CSV file into a table of text columns (no checks, no encryption);
(c) the re-run of (a) on the same file (creates nothing).
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import tempfile
import time
from pathlib import Path

from _harness import run_in_own_database

BENCH_DB = "citycard_bench_issue"
HEADER = "name,id_number,phone,scheme,employer,community,local_hukou,local_social_insurance,categories"


def generate(path: Path, rows: int) -> None:
    from citycard.tenants.cards.pii import id_number_build

    rng = random.Random(11)
    surnames = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
    given = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英"
    districts = ["330402", "330411", "330421", "330424", "330481", "330482", "330483"]
    start = dt.date(1940, 1, 1)
    with path.open("w", encoding="utf-8") as out:
        out.write(HEADER + "\n")
        for i in range(rows):
            birth = start + dt.timedelta(days=i % 25_000)
            number = id_number_build(division=districts[i % 7], birth_date=birth, sequence=i // 25_000)
            phone = f"1{rng.choice('3578')}{rng.randrange(10**9):09d}" if rng.random() < 0.8 else ""
            age = 2026 - birth.year
            cats = (
                "elderly" if age >= 70 else ("student" if age < 22 else ("disabled" if i % 50 == 0 else ""))
            )
            name = rng.choice(surnames) + rng.choice(given) + (rng.choice(given) if i % 2 else "")
            out.write(f"{name},{number},{phone},01,嘉兴企业{i // 1000:03d},,1,1,{cats}\n")


def child(args) -> None:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django_tenants.utils import tenant_context

    from citycard.platform import services
    from citycard.platform.models import Tenant
    from citycard.tenants.cards.batch import cards_import
    from citycard.tenants.cards.services import schemes_seed

    call_command("migrate", interactive=False, verbosity=0)
    services.platform_bootstrap()
    if not Tenant.objects.filter(code="jiaxing").exists():
        services.tenant_create(code="jiaxing", division_code="330400", actor="bench")
    jiaxing = Tenant.objects.get(code="jiaxing")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "employers.csv"
        t0 = time.perf_counter()
        generate(path, args.rows)
        print(
            f"generated {args.rows:,} rows ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s"
        )
        with tenant_context(jiaxing):
            schemes_seed(actor="bench")
            t0 = time.perf_counter()
            report = cards_import(path=path, actor="bench", state="active")
            took = time.perf_counter() - t0
            assert report.cards_created == args.rows and not report.errors, report.as_dict()
            print(
                f"(a) cards_import: {args.rows:,} cardholders + cards in {took:.2f} s = "
                f"{args.rows / took:,.0f} rows/s = {args.rows / took * 60:,.0f} per minute"
            )
            with connection.cursor() as cur:
                cur.execute(
                    "CREATE TABLE bench_plain (name text, id_number text, phone text, scheme text, employer text,"
                    " community text, local_hukou text, local_social_insurance text, categories text)"
                )
                t0 = time.perf_counter()
                with path.open(encoding="utf-8") as handle:
                    cur.cursor.copy_expert(
                        "COPY bench_plain FROM STDIN WITH (FORMAT csv, HEADER true)", handle
                    )
                plain = time.perf_counter() - t0
                print(f"(b) plain COPY of the same rows: {plain:.2f} s = {args.rows / plain:,.0f} rows/s")
                cur.execute("DROP TABLE bench_plain")
            t0 = time.perf_counter()
            again = cards_import(path=path, actor="bench", state="active")
            rerun = time.perf_counter() - t0
            assert again.cards_created == 0 and again.holders_created == 0
            print(f"(c) re-run of the same file: {rerun:.2f} s, nothing created")
            print(f"import / plain COPY: {took / plain:.1f}x the time")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    run_in_own_database(script=__file__, database=BENCH_DB)


if __name__ == "__main__":
    main()
