"""A one-table migration across every tenant schema: ``citycard migrate``'s worker pool against the
schema-after-schema path it replaced, and the bare SQL as the floor.

    .venv/bin/python benchmarks/migrate.py [--tenants 200] [--baseline 20] [--processes 2]
    .venv/bin/python benchmarks/migrate.py --reuse [--baseline 20]   # the tenants benchmarks/tenant_create.py
                                                                       # --country N --keep left

Without ``--reuse`` the database (``citycard_bench``) is dropped and ``--tenants`` tenants of the country
are created first (``citycard tenant scale``'s service). A throw-away migration creating one table is then
given to the tenant app ``dashboard`` (MIGRATION_MODULES), and, in one run:

1. the floor: the migration's SQL alone (``CREATE TABLE``) in ``--baseline`` schemas, one after another;
2. the path before: ``migrate_schemas --schema <s>`` (django-tenants' standard executor) in the same number
   of other schemas, one after another;
3. the pool, its workers spawned (what a process with other threads running gets, e.g. the demo) in as
   many other schemas: its rate beside the forked pool's is the cost of starting fresh interpreters;
4. the pool as ``citycard migrate`` runs it (workers forked): the template, then
   ``schema_migrate.tenants_migrate`` over all the other schemas.

It prints schemas/s of each and what 3,000 schemas would take at that rate, the pool's parallel
efficiency (worker seconds / wall seconds / processes), and the spawned workers' start-up (the spawned
pool's seconds less its schemas at the forked pool's rate).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

BENCH_DB = "citycard_bench"
MIGRATION = textwrap.dedent("""
    from django.db import migrations


    class Migration(migrations.Migration):
        dependencies = []
        operations = [
            migrations.RunSQL(
                "CREATE TABLE bench_probe (id bigint PRIMARY KEY, note text NOT NULL DEFAULT '')",
                "DROP TABLE bench_probe",
            )
        ]
""")


def setup(tenants: int) -> None:
    """The platform and ``tenants`` tenants of the country, with the product's migrations only."""
    import django

    django.setup()
    from django.core.management import call_command

    from citycard.platform import scale, services

    call_command("migrate", interactive=False, verbosity=0)
    services.platform_bootstrap()
    scale.country_build(limit=tenants, largest=0, actor="bench")


def child(tenants: int, baseline: int, processes: int) -> dict:
    """With the probe migration in MIGRATION_MODULES: the floor, the path before, the pool."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from citycard.platform.schema_migrate import tenant_schemas, tenants_migrate
    from citycard.platform.schemas import template_migrate

    call_command("migrate_schemas", shared=True, interactive=False, verbosity=0)
    schemas = tenant_schemas()
    floor_schemas, before_schemas = schemas[:baseline], schemas[baseline : 2 * baseline]
    spawned_schemas = schemas[2 * baseline : 3 * baseline]

    start = time.perf_counter()
    for schema in floor_schemas:
        with connection.cursor() as cur:
            cur.execute(
                f"CREATE TABLE \"{schema}\".bench_floor (id bigint PRIMARY KEY, note text NOT NULL DEFAULT '')"
            )
    floor = time.perf_counter() - start

    start = time.perf_counter()
    template_migrate()
    template = time.perf_counter() - start

    start = time.perf_counter()
    for schema in before_schemas:
        call_command("migrate_schemas", schema_name=schema, interactive=False, verbosity=0)
    before = time.perf_counter() - start
    connection.set_schema_to_public()

    spawned = tenants_migrate(processes=processes, schemas=spawned_schemas, start_method="spawn")
    assert not spawned.failed, spawned.failed[:3]
    rest = [s for s in schemas if s not in before_schemas and s not in spawned_schemas]
    report = tenants_migrate(processes=processes, schemas=rest, start_method="fork")
    assert not report.failed, report.failed[:3]
    migrated = len(report.migrated)
    worker_seconds = [o.seconds for o in report.outcomes if o.applied]
    with connection.cursor() as cur:
        cur.execute("SELECT pg_database_size(current_database()), (SELECT count(*) FROM pg_class)")
        size, relations = cur.fetchone()
    return {
        "schemas": len(schemas),
        "floor": (len(floor_schemas), floor),
        "before": (len(before_schemas), before),
        "template": template,
        "spawned": (len(spawned.migrated), spawned.seconds),
        "pool": (migrated, report.seconds),
        "processes": processes,
        "worker_median": statistics.median(worker_seconds) if worker_seconds else 0,
        "worker_max": max(worker_seconds) if worker_seconds else 0,
        "worker_sum": sum(worker_seconds),
        "db_mb": size / 1024 / 1024,
        "pg_class": relations,
    }


def main() -> None:
    # _harness puts the project first and this folder off sys.path (benchmarks/graphql.py would shadow the
    # graphql package) before Django is imported. Not imported at the top: the spawned pool's processes run
    # this file again (as __mp_main__) on the sys.path it left, without this folder.
    import _harness  # noqa: F401

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument(
        "--baseline", type=int, default=20, help="schemas for the floor, the path before and the spawned pool"
    )
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--reuse", action="store_true", help="the tenants already in citycard_bench")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--setup", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.setup:
        setup(args.tenants)
        return
    if args.child:
        print(json.dumps(child(args.tenants, args.baseline, args.processes)))
        return
    run(tenants=args.tenants, baseline=args.baseline, processes=args.processes, reuse=args.reuse)


def run(*, tenants: int, baseline: int, processes: int, reuse: bool) -> dict:
    """The whole run (benchmarks/national.py calls it after its tenants): prints the table, returns the
    figures."""
    from _harness import bench_env, reset_database, stop_embedded  # loaded already (main, national.py)

    argv = ["--tenants", str(tenants), "--baseline", str(baseline), "--processes", str(processes)]
    env = bench_env(BENCH_DB)
    if not reuse:
        reset_database(env, BENCH_DB)
        subprocess.run([sys.executable, __file__, "--setup", *argv], env=env, check=True)
    with tempfile.TemporaryDirectory() as tmp:
        package = Path(tmp) / "bench_probe_migrations"
        package.mkdir()
        (package / "__init__.py").write_text("")
        (package / "0001_probe.py").write_text(MIGRATION)
        (Path(tmp) / "bench_migrate_settings.py").write_text(
            "from citycard.platform.settings import *  # noqa\n"
            "MIGRATION_MODULES = {'dashboard': 'bench_probe_migrations'}\n"
        )
        env["PYTHONPATH"] = tmp + os.pathsep + env.get("PYTHONPATH", "")
        env["DJANGO_SETTINGS_MODULE"] = "bench_migrate_settings"
        out = subprocess.run(
            [sys.executable, __file__, "--child", *argv],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        f"{r['schemas']} tenant schemas ({r['db_mb']:.0f} MB, {r['pg_class']} pg_class rows); "
        f"template {r['template']:.2f}s"
    )
    print(f"{'path':<44} {'schemas':>8} {'seconds':>9} {'schemas/s':>10} {'3,000 would take':>17}")
    for label, (n, seconds) in (
        ("the SQL alone, one after another (floor)", r["floor"]),
        ("migrate_schemas, one after another (before)", r["before"]),
        (f"pool of {r['processes']}, workers spawned", r["spawned"]),
        (f"citycard migrate, pool of {r['processes']}", r["pool"]),
    ):
        rate = n / seconds if seconds else 0
        print(
            f"{label:<44} {n:>8} {seconds:>9.1f} {rate:>10.1f} {3000 / rate / 60 if rate else 0:>15.1f} min"
        )
    pool_n, pool_s = r["pool"]
    spawned_n, spawned_s = r["spawned"]
    print(
        f"pool: worker seconds a schema median {r['worker_median']:.3f}s max {r['worker_max']:.2f}s; "
        f"parallel efficiency {r['worker_sum'] / pool_s / r['processes']:.0%}; workers forked "
        f"(one thread in the process); spawned workers' start-up {spawned_s - spawned_n * pool_s / pool_n:.1f}s"
    )
    stop_embedded(env)
    return r


if __name__ == "__main__":
    main()
