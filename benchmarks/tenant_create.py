"""How long a new tenant takes to go live: cloning the template schema vs replaying every migration.

    .venv/bin/python benchmarks/tenant_create.py [--clones 200] [--migrated 10] [--extra-migrations 60]
    .venv/bin/python benchmarks/tenant_create.py --country 3000 [--keep]
    .venv/bin/python benchmarks/tenant_create.py --existing   # a --country run's database, e.g. stopped early

Runs in its own database (``citycard_bench``, dropped and re-created) on the embedded PostgreSQL, or on
the server DATABASE_URL names. Scenario 1 uses the product's migrations as they are; scenario 2 adds a
throw-away tenant app with ``--extra-migrations`` migrations, to show that cloning stays flat while the
migrating path grows with every migration. Each scenario runs in a fresh process.

``--country N`` instead builds the first N tenants of the whole country with ``citycard tenant scale``'s
service (real GB/T 2260 cities and counties, no cardholders) and prints the time per tenant of the first 100
(the baseline) beside the last 100, and how the catalogue grows: database size, ``pg_class`` rows, dead
catalogue rows and autovacuum runs (``pg_stat_sys_tables``, ``pg_stat_user_tables``) and autovacuum workers
seen running (``pg_stat_activity``), every N/10 tenants. ``--keep`` keeps the database (``citycard_bench``)
for ``benchmarks/migrate.py --reuse``. With ``BENCH_SQL=1`` it also prints the statements of the first and
the last 100 tenants by total time, side by side: what grows with the number of schemas shows there.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from _harness import ROOT, bench_env, reset_database, stop_embedded

BENCH_DB = "citycard_bench"


def _write_extra_app(base: Path, migrations: int) -> None:
    """A tenant app whose one model gains a field per migration: the shape of a project's history."""
    app = base / "benchextra"
    (app / "migrations").mkdir(parents=True)
    (app / "__init__.py").write_text("")
    fields = "\n".join(f"    f{i} = models.IntegerField(default=0)" for i in range(migrations))
    (app / "models.py").write_text(
        "from django.db import models\n\n\nclass Ledgerish(models.Model):\n"
        "    name = models.CharField(max_length=20)\n" + fields + "\n"
    )
    (app / "migrations" / "__init__.py").write_text("")
    (app / "migrations" / "0001_initial.py").write_text(
        textwrap.dedent("""
        from django.db import migrations, models


        class Migration(migrations.Migration):
            initial = True
            dependencies = []
            operations = [
                migrations.CreateModel(
                    name="Ledgerish",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False)),
                        ("name", models.CharField(max_length=20)),
                    ],
                ),
            ]
    """)
    )
    for i in range(migrations):
        (app / "migrations" / f"{i + 2:04d}_f{i}.py").write_text(
            textwrap.dedent(f"""
            from django.db import migrations, models


            class Migration(migrations.Migration):
                dependencies = [("benchextra", "{(f"{i + 1:04d}_f{i - 1}") if i else "0001_initial"}")]
                operations = [migrations.AddField("ledgerish", "f{i}", models.IntegerField(default=0))]
        """)
        )
    (base / "bench_settings.py").write_text(
        "from citycard.platform.settings import *  # noqa\n"
        "TENANT_APPS = TENANT_APPS + ['benchextra']\n"
        "INSTALLED_APPS = INSTALLED_APPS + ['benchextra']\n"
    )


def child(clones: int, migrated: int) -> dict:
    """One scenario, in this process: Django is set up here with the bench database."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.db.migrations.loader import MigrationLoader

    from citycard.platform import divisions, services
    from citycard.platform.models import Domain, Tenant

    call_command("migrate", interactive=False, verbosity=0)
    services.platform_bootstrap()

    # Synthetic divisions (prefix 5xxxxx) so that 200+ cities can exist; lookup cost is not measured.
    real = divisions.reference_divisions()
    synthetic = {
        f"5{i:05d}": divisions.Division(f"5{i:05d}", f"测试市{i}", f"Bench {i}", "测试", "city", None)
        for i in range(clones + migrated + 10)
    }
    divisions.reference_divisions.cache_clear()
    divisions.reference_divisions = lambda: {**real, **synthetic}  # type: ignore[assignment]
    codes = iter(sorted(synthetic))

    clone_times = []
    for i in range(clones):
        start = time.perf_counter()
        services.tenant_create(code=f"clone{i}", division_code=next(codes), actor="bench")
        clone_times.append(time.perf_counter() - start)

    migrate_times = []
    for i in range(migrated):
        code = f"migrated{i}"
        start = time.perf_counter()
        # What tenant creation costs without a template: CREATE SCHEMA, then every migration.
        tenant = Tenant(
            schema_name=code,
            code=code,
            name_zh=code,
            name_en=code,
            division_code=next(codes),
            province="测试",
            kind="city",
        )
        tenant.save()
        with connection.cursor() as cur:
            cur.execute(f'CREATE SCHEMA "{code}"')
        call_command("migrate_schemas", tenant=True, schema_name=code, interactive=False, verbosity=0)
        connection.set_schema_to_public()
        Domain.objects.create(domain=f"{code}.bench", tenant=tenant, is_primary=True)
        migrate_times.append(time.perf_counter() - start)

    loader = MigrationLoader(None, ignore_no_migrations=True)
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = '_template'")
        tables = cur.fetchone()[0]
    return {
        "migrations": len(loader.graph.nodes),
        "tenant_tables": tables,
        "clone_median": statistics.median(clone_times) if clone_times else None,
        "clone_p95": sorted(clone_times)[int(len(clone_times) * 0.95) - 1] if clone_times else None,
        # Flatness as tenants accumulate: the first and the last 10% of the clones.
        "clone_first": statistics.median(clone_times[: max(len(clone_times) // 10, 1)])
        if clone_times
        else None,
        "clone_last": statistics.median(clone_times[-max(len(clone_times) // 10, 1) :])
        if clone_times
        else None,
        "migrate_median": statistics.median(migrate_times) if migrate_times else None,
        "clones": clones,
        "migrated": migrated,
    }


_CATALOGUE = ("pg_class", "pg_attribute", "pg_depend", "pg_type", "pg_index", "pg_constraint")


def _catalogue(cur) -> dict:
    cur.execute("SELECT pg_database_size(current_database()), (SELECT count(*) FROM pg_class)")
    size, relations = cur.fetchone()
    cur.execute(
        "SELECT relname, n_live_tup, n_dead_tup, autovacuum_count, autoanalyze_count FROM pg_stat_sys_tables"
        " WHERE schemaname = 'pg_catalog' AND relname = ANY(%s)",
        [list(_CATALOGUE)],
    )
    sys_tables = {r[0]: {"live": r[1], "dead": r[2], "autovacuum": r[3], "autoanalyze": r[4]} for r in cur}
    cur.execute(
        "SELECT coalesce(sum(autovacuum_count), 0), coalesce(sum(autoanalyze_count), 0) FROM pg_stat_user_tables"
    )
    user_vacuums, user_analyzes = cur.fetchone()
    cur.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'")
    workers = cur.fetchone()[0]
    return {
        "size": size,
        "pg_class": relations,
        "catalogue": sys_tables,
        "user_autovacuum": int(user_vacuums),
        "user_autoanalyze": int(user_analyzes),
        "autovacuum_workers": workers,
    }


def country_child(n: int) -> dict:
    """The first ``n`` tenants of the country, as ``citycard tenant scale --country --limit n`` makes them."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from citycard.platform import scale, services

    call_command("migrate", interactive=False, verbosity=0)
    services.platform_bootstrap()
    step = max(n // 10, 1)
    samples = []
    workers_seen = 0

    def progress(division, tenant, seconds):
        nonlocal workers_seen
        done = len(times)
        if seconds is not None:
            times.append(seconds)
        if len(times) != done and len(times) % step == 0:
            with connection.cursor() as cur:
                sample = _catalogue(cur)
            workers_seen = max(workers_seen, sample["autovacuum_workers"])
            samples.append({"tenants": len(times), "last_median": statistics.median(times[-step:]), **sample})

    times: list[float] = []
    # BENCH_SQL: each statement's time per tenant (one dict per tenant, keyed by the statement's start; the
    # clone's two DDL scripts are one statement each), the catalogue samples left out.
    per_tenant: list[dict[str, float]] = [{}]
    sampling = False

    def timed_sql(execute, sql, params, many, context):
        begun = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            if not sampling:
                key = re.sub(r'"[^"]+"\.', '"<schema>".', " ".join(sql.split()))[:80]
                if len(sql) > 2000:
                    key = f"[script of {sql.count(';')} statements] {key[:50]}"
                bucket = per_tenant[-1]
                bucket[key] = bucket.get(key, 0.0) + time.perf_counter() - begun

    def timed_progress(division, tenant, seconds):
        nonlocal sampling
        sampling = True
        try:
            progress(division, tenant, seconds)
        finally:
            sampling = False
        if seconds is not None:
            per_tenant.append({})

    with connection.cursor() as cur:
        start = _catalogue(cur)
    began = time.perf_counter()
    if os.environ.get("BENCH_SQL"):
        with connection.execute_wrapper(timed_sql):
            scale.country_build(limit=n, largest=0, actor="bench", progress=timed_progress)
    else:
        scale.country_build(limit=n, largest=0, actor="bench", progress=progress)
    wall = time.perf_counter() - began
    window = min(100, max(len(times) // 2, 1))
    first, last = times[:window], times[-window:]
    statements = {}
    if os.environ.get("BENCH_SQL"):
        done = per_tenant[: len(times)]
        for label, part in (("first", done[:window]), ("last", done[-window:])):
            totals: dict[str, float] = {}
            for bucket in part:
                for key, seconds in bucket.items():
                    totals[key] = totals.get(key, 0.0) + seconds
            statements[label] = {key: seconds / len(part) for key, seconds in totals.items()}

    def p95(values):
        return sorted(values)[max(int(len(values) * 0.95) - 1, 0)]

    return {
        "tenants": len(times),
        "wall": wall,
        "window": window,
        "first_median": statistics.median(first),
        "first_p95": p95(first),
        "last_median": statistics.median(last),
        "last_p95": p95(last),
        "start": start,
        "samples": samples,
        "autovacuum_workers_seen": workers_seen,
        "statements": statements,
    }


def existing_child() -> dict:
    """The figures of a --country run that was stopped: time per tenant from the tenants' creation times."""
    import django

    django.setup()
    from django.db import connection

    from citycard.platform.models import Tenant

    stamps = list(
        Tenant.objects.filter(code__regex=r"^d\d{6}$")
        .order_by("created_at")
        .values_list("created_at", flat=True)
    )
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)]
    window = min(100, max(len(gaps) // 2, 1))
    with connection.cursor() as cur:
        sample = _catalogue(cur)
    step = max(len(gaps) // 10, 1)
    return {
        "tenants": len(stamps),
        "wall": (stamps[-1] - stamps[0]).total_seconds(),
        "window": window,
        "first_median": statistics.median(gaps[:window]),
        "first_p95": sorted(gaps[:window])[max(int(window * 0.95) - 1, 0)],
        "last_median": statistics.median(gaps[-window:]),
        "last_p95": sorted(gaps[-window:])[max(int(window * 0.95) - 1, 0)],
        "start": sample,
        "samples": [],
        "deciles": [
            (i + step, statistics.median(gaps[i : i + step])) for i in range(0, len(gaps) - step + 1, step)
        ],
        "autovacuum_workers_seen": sample["autovacuum_workers"],
    }


def run_country(n: int, keep: bool, existing: bool = False) -> None:
    env = bench_env(BENCH_DB)
    if existing:
        command = [sys.executable, __file__, "--existing-child"]
    else:
        reset_database(env, BENCH_DB)
        command = [sys.executable, __file__, "--country-child", str(n)]
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    if existing:
        print("(from the creation times of the tenants in citycard_bench; catalogue figures as it is now)")
        print("median time per tenant by tenth: " + ", ".join(f"{n}: {m:.3f}s" for n, m in r["deciles"]))
    mb = 1024 * 1024
    print(
        f"{r['tenants']} tenants of the country in {r['wall']:.0f} s ({r['tenants'] / r['wall']:.1f} tenants/s)"
    )
    print(
        f"time per tenant  first {r['window']}: median {r['first_median']:.3f}s p95 {r['first_p95']:.3f}s   "
        f"last {r['window']}: median {r['last_median']:.3f}s p95 {r['last_p95']:.3f}s   "
        f"ratio {r['last_median'] / r['first_median']:.2f}x"
    )
    print(
        f"{'tenants':>8} {'median':>8} {'db MB':>8} {'pg_class':>9} {'pg_attribute':>13} {'dead cat.':>10} "
        f"{'cat. autovac':>12} {'user autovac':>12} {'av workers':>10}"
    )
    for s in [{"tenants": 0, "last_median": 0.0, **r["start"]}, *r["samples"]]:
        cat = s["catalogue"]
        print(
            f"{s['tenants']:>8} {s['last_median']:>7.3f}s {s['size'] / mb:>8.0f} {s['pg_class']:>9} "
            f"{cat.get('pg_attribute', {}).get('live', 0):>13} {sum(c['dead'] for c in cat.values()):>10} "
            f"{sum(c['autovacuum'] for c in cat.values()):>12} {s['user_autovacuum']:>12} "
            f"{s['autovacuum_workers']:>10}"
        )
    print(f"autovacuum workers seen at once (sampled): {r['autovacuum_workers_seen']}")
    statements = r.get("statements")
    if statements:
        first, last = statements["first"], statements["last"]
        keys = sorted(set(first) | set(last), key=lambda k: -max(first.get(k, 0.0), last.get(k, 0.0)))
        print(f"statements per tenant by time (BENCH_SQL), first {r['window']} vs last {r['window']}, ms:")
        for key in keys[:15]:
            print(f"  {first.get(key, 0.0) * 1000:8.2f} {last.get(key, 0.0) * 1000:8.2f}  {key}")
    if not keep:
        stop_embedded(env)


def run_scenario(clones: int, migrated: int, extra: int) -> dict:
    env = bench_env(BENCH_DB)
    with tempfile.TemporaryDirectory() as tmp:
        if extra:
            _write_extra_app(Path(tmp), extra)
            env["PYTHONPATH"] = tmp + os.pathsep + env.get("PYTHONPATH", "")
            env["DJANGO_SETTINGS_MODULE"] = "bench_settings"
        reset_database(env, BENCH_DB)
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(clones), str(migrated)],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clones", type=int, default=200)
    parser.add_argument("--migrated", type=int, default=10)
    parser.add_argument("--extra-migrations", type=int, default=60)
    parser.add_argument("--country", type=int, metavar="N", help="the first N tenants of the whole country")
    parser.add_argument("--keep", action="store_true", help="with --country: keep the database running")
    parser.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--country-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--existing", action="store_true", help="the figures of the country tenants citycard_bench holds now"
    )
    parser.add_argument("--existing-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    if args.country_child:
        print(json.dumps(country_child(args.country_child)))
        return
    if args.existing_child:
        print(json.dumps(existing_child()))
        return
    if args.country or args.existing:
        run_country(args.country or 0, args.keep or args.existing, existing=args.existing)
        return

    scenarios = [("as shipped", args.clones, args.migrated, 0)]
    if args.extra_migrations:
        scenarios.append(
            (
                f"+{args.extra_migrations} migrations",
                max(args.clones // 4, 1),
                max(args.migrated // 2, 1),
                args.extra_migrations,
            )
        )
    print(
        f"{'scenario':<20} {'migrations':>10} {'tables':>7} {'clone median':>13} {'clone p95':>10} "
        f"{'first 10%':>10} {'last 10%':>9} {'migrate median':>15} {'ratio':>7}   (n clone / n migrate)"
    )
    for label, clones, migrated, extra in scenarios:
        r = run_scenario(clones, migrated, extra)
        ratio = r["migrate_median"] / r["clone_median"]
        print(
            f"{label:<20} {r['migrations']:>10} {r['tenant_tables']:>7} {r['clone_median']:>12.3f}s "
            f"{r['clone_p95']:>9.3f}s {r['clone_first']:>9.3f}s {r['clone_last']:>8.3f}s "
            f"{r['migrate_median']:>14.3f}s {ratio:>6.1f}x   ({clones} / {migrated})"
        )
    if not os.environ.get("DATABASE_URL"):
        env = {
            **os.environ,
            "CITYCARD_DATA_DIR": os.environ.get("CITYCARD_DATA_DIR", str(ROOT / ".citycard" / "bench")),
        }
        subprocess.run(
            [sys.executable, "-m", "citycard.platform.cli", "db", "stop"],
            env=env,
            capture_output=True,
            check=False,
        )


if __name__ == "__main__":
    main()
