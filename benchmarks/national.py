"""The national figures in one run (issue 23), each beside its baseline: the sibling benchmarks' own
functions, one after another.

    .venv/bin/python benchmarks/national.py                       # 3,000 tenants, 300 cities, 1M records
    .venv/bin/python benchmarks/national.py --tenants 50 --participants 20 --records 20000 --cards 50   # quick

1. **Tenants** (benchmarks/tenant_create.py ``--country``): the first ``--tenants`` tenants of the country
   as ``citycard tenant scale --country`` makes them; time per tenant (median, p95) of the first 100 beside
   the last 100, database size and ``pg_class`` rows every tenth of the way, autovacuum seen.
2. **Migrations** (benchmarks/migrate.py ``--reuse``): a one-table migration over those tenants' schemas by
   ``citycard migrate``'s pool, beside the migration's bare SQL (the floor) and the schema-after-schema
   path it replaced, in ``--baseline`` schemas each; what 3,000 schemas would take. Goal ≤ 5 min.
3. **The national cycle** (benchmarks/clearing.py ``--participants``): ``--participants`` cities in the
   national network clearing ``--records`` roaming records, step by step, beside a bare ``GROUP BY`` of
   the same rows, and the console's cycle page. Goals: the cycle ≤ 90 s, netting ≤ 1.5× the ``GROUP BY``.

Sections 1–2 work in the database ``citycard_bench``, section 3 in ``citycard_bench_clearing`` (each dropped
and re-created), on the embedded PostgreSQL under ``.citycard/bench`` or the server ``DATABASE_URL`` names.
``--skip tenants,cycle`` leaves sections out (migrations need the tenants).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time
from pathlib import Path

import _harness  # noqa: F401  (the project on sys.path, this folder off it; the siblings import it)

HERE = Path(__file__).resolve().parent


def _sibling(name: str):
    """benchmarks/<name>.py as a module, loaded by path (this folder is kept off the import path)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _section(title: str) -> float:
    print(f"\n== {title} ==", flush=True)
    return time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tenants", type=int, default=3000, help="tenants of the country (default 3,000)")
    parser.add_argument(
        "--baseline", type=int, default=20, help="schemas for the migration's floor and the path before"
    )
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 2, help="migrate's pool")
    parser.add_argument("--participants", type=int, default=300, help="cities of the cycle (default 300)")
    parser.add_argument("--records", type=int, default=1_000_000, help="records of the cycle (default 1M)")
    parser.add_argument("--cards", type=int, default=300, help="cards per issuer in the cycle (default 300)")
    parser.add_argument("--page-runs", type=int, default=20, help="requests of the cycle page (0: none)")
    parser.add_argument(
        "--skip", default="", help="sections left out: tenants, migrate, cycle (comma-separated)"
    )
    args = parser.parse_args()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    began = time.perf_counter()
    if os.path.exists("/proc/loadavg"):
        print(f"load average at the start: {Path('/proc/loadavg').read_text().split()[:3]}")
    if "tenants" not in skip:
        start = _section(f"1. {args.tenants:,} tenants of the country (creation, catalogue)")
        _sibling("tenant_create").run_country(args.tenants, keep=True)
        print(f"(section {time.perf_counter() - start:.0f} s)")
    if "migrate" not in skip and "tenants" not in skip:
        start = _section("2. a one-table migration across every tenant schema")
        baseline = max(1, min(args.baseline, args.tenants // 4))
        _sibling("migrate").run(tenants=args.tenants, baseline=baseline, processes=args.processes, reuse=True)
        print(f"(section {time.perf_counter() - start:.0f} s)")
    if "cycle" not in skip:
        start = _section(f"3. the national cycle: {args.participants} cities, {args.records:,} records")
        _sibling("clearing").main(
            [
                "--participants",
                str(args.participants),
                "--records",
                str(args.records),
                "--cards",
                str(args.cards),
                "--page-runs",
                str(args.page_runs),
            ]
        )
        print(f"(section {time.perf_counter() - start:.0f} s)")
    if os.path.exists("/proc/loadavg"):
        print(f"\nload average at the end: {Path('/proc/loadavg').read_text().split()[:3]}")
    print(f"national benchmark: {time.perf_counter() - began:.0f} s in all")


if __name__ == "__main__":
    main()
