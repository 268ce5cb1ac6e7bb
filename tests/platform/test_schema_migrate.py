"""`citycard migrate` across tenant schemas in parallel: the template first, one failing schema reported by
name while the others are applied once, and a re-run after the fix that visits only the failed one."""

from __future__ import annotations

import io
import multiprocessing
import signal
import sys
import textwrap
import threading
import time

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection

from citycard.platform import embedded_pg, scale, services
from citycard.platform.models import (
    ApiKey,
    Domain,
    NetworkMembership,
    Publication,
    SchemaMigration,
    Tenant,
    TenantKey,
)
from citycard.platform.schema_migrate import (
    pool_start_method,
    tenant_schemas,
    tenants_migrate,
    threads_running,
    workers_start,
)
from citycard.platform.schemas import schema_drop, template_schema_name

PROBE = textwrap.dedent("""
    from django.db import migrations


    class Migration(migrations.Migration):
        dependencies = []
        operations = [
            migrations.RunSQL(
                "CREATE TABLE scale_probe (id integer);"
                " INSERT INTO public.scale_probe_log VALUES (current_schema());",
                "DROP TABLE scale_probe;",
            )
        ]
""")


def _sql(statement: str, params=None) -> list[tuple]:
    with connection.cursor() as cur:
        cur.execute(statement, params)
        return cur.fetchall() if cur.description else []


def _all_schemas() -> list[str]:
    connection.set_schema_to_public()
    return [
        template_schema_name(),
        *Tenant.objects.exclude(schema_name="public").values_list("schema_name", flat=True),
    ]


@pytest.fixture
def probe(committed_db, tmp_path, settings, monkeypatch):
    """A one-table migration for the tenant app `dashboard` (which has none), and 13 more tenants (20 in
    all with the session's); everything is taken away again afterwards."""
    package = tmp_path / "scale_probe_migrations"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "0001_probe.py").write_text(PROBE)
    monkeypatch.syspath_prepend(str(tmp_path))
    settings.MIGRATION_MODULES = {"dashboard": "scale_probe_migrations"}
    _sql("CREATE TABLE public.scale_probe_log (schema_name text)")
    divisions = [d for d in scale.country_divisions() if d.kind == "city" and d.code.startswith("65")][:13]
    codes = [f"mig{i:02d}" for i in range(len(divisions))]
    for code, division in zip(codes, divisions, strict=True):
        services.tenant_create(code=code, division_code=division.code, actor="test")
    yield codes
    connection.set_schema_to_public()
    for schema in ["public", *_all_schemas()]:
        _sql(f'DELETE FROM "{schema}".django_migrations WHERE app = %s', ["dashboard"])
        _sql(f'DROP TABLE IF EXISTS "{schema}".scale_probe')
    _sql("DROP TABLE public.scale_probe_log")
    SchemaMigration.objects.all().delete()
    tenants = Tenant.objects.filter(code__in=codes)
    for model in (Publication, ApiKey, NetworkMembership, TenantKey, Domain):
        model.objects.filter(tenant__in=tenants).delete()
    for code in codes:
        schema_drop(code)
    tenants.delete()


def _logged() -> dict[str, int]:
    counts: dict[str, int] = {}
    for (schema,) in _sql("SELECT schema_name FROM public.scale_probe_log"):
        counts[schema] = counts.get(schema, 0) + 1
    return counts


def test_failed_schema_is_named_the_others_applied_once_and_only_it_retried(probe):
    broken = probe[5]
    _sql(f'CREATE TABLE "{broken}".scale_probe (id integer)')  # in the way of the migration's table
    schemas = _all_schemas()
    assert len(schemas) >= 21  # the template and 20 tenants

    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError) as failed:
        call_command("migrate", "--processes", "2", stdout=out, stderr=err)
    assert f"{broken}: ProgrammingError" in str(failed.value)
    assert 'relation "scale_probe" already exists' in str(failed.value)
    assert f"{broken} 失败" in err.getvalue()
    # The template first (its own migrate), then every tenant but the broken one, each exactly once.
    assert _logged() == {s: 1 for s in schemas if s != broken}
    state = {row.schema_name: row for row in SchemaMigration.objects.all()}
    assert state[broken].status == "failed" and "scale_probe" in state[broken].error
    assert {s for s, row in state.items() if row.status == "applied"} == set(schemas) - {
        broken,
        template_schema_name(),
    }
    assert all("dashboard.0001_probe" in row.target for row in state.values())

    _sql(f'DROP TABLE "{broken}".scale_probe')  # the fix
    out = io.StringIO()
    call_command("migrate", "--processes", "2", stdout=out)
    report = out.getvalue()
    assert "以 2 个进程检查 1 个" in report and "已迁移 1" in report
    assert f"跳过 {len(schemas) - 2}（此前已应用）" in report
    assert _logged() == {s: 1 for s in schemas}
    assert SchemaMigration.objects.get(schema_name=broken).attempts == 2
    assert set(SchemaMigration.objects.values_list("status", flat=True)) == {"applied"}

    # Nothing pending: a run in this process (--processes 1) visits nothing and changes nothing.
    out = io.StringIO()
    call_command("migrate", "--processes", "1", stdout=out)
    assert "检查 0 个" in out.getvalue()
    assert _logged() == {s: 1 for s in schemas}


@pytest.mark.skipif(
    not settings.DATABASES["default"].get("EMBEDDED_PGDATA"), reason="the embedded PostgreSQL's start lock"
)
def test_the_pool_finishes_when_another_thread_held_a_lock_its_workers_need_as_it_started(committed_db):
    """Another thread of the process holds the embedded PostgreSQL's start lock — as any thread opening a
    connection does for a moment (the demo's sandbox servers, a request) — while the pool starts its workers.
    A worker forked then keeps the lock held for ever (its holder is not in the child) and never connects;
    every schema must be visited all the same, the workers spawned rather than forked."""
    schemas = tenant_schemas()
    recorded = set(SchemaMigration.objects.values_list("schema_name", flat=True))
    connection.ensure_connection()  # the run's own queries before the pool open no connection
    held = threading.Event()

    def holder() -> None:
        with embedded_pg._lock:
            held.set()
            for _ in range(600):  # until the pool's two workers are started (a minute at most)
                if len(multiprocessing.active_children()) >= 2:
                    break
                time.sleep(0.1)

    def too_long(signum, frame):
        raise TimeoutError("the pool's workers never finished: a lock held when they were forked?")

    lock_holder = threading.Thread(target=holder, daemon=True)
    lock_holder.start()
    held.wait()
    assert threads_running() >= 2 and pool_start_method() == "spawn"
    # A bound on a deadlock, not a measure (a healthy run takes seconds): the alarm interrupts the wait for
    # the results, and leaving the pool ends its workers.
    previous = signal.signal(signal.SIGALRM, too_long)
    signal.alarm(300)
    try:
        report = tenants_migrate(processes=2, schemas=schemas, resume=False)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        lock_holder.join()
        connection.set_schema_to_public()
        SchemaMigration.objects.filter(schema_name__in=set(schemas) - recorded).delete()
    assert sorted(o.schema for o in report.outcomes) == sorted(schemas)
    assert report.failed == []


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_the_workers_end_on_sigterm_whatever_handler_the_process_installed(committed_db, start_method):
    """`citycard demo` turns SIGTERM into sys.exit (so that its cleanup runs) before it migrates. A forked
    worker inherited that handler, which runs only between bytecodes: a worker the pool's SIGTERM reached
    as it went into the wait for its next task slept on, and the pool waited for it for ever. A worker takes
    SIGTERM's default action, whatever the process that started the pool installed."""
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        workers = workers_start(2, start_method=start_method)
    finally:
        signal.signal(signal.SIGTERM, previous)
    try:
        assert workers.apply(signal.getsignal, (signal.SIGTERM,)) == signal.SIG_DFL
    finally:
        workers.terminate()
        workers.join()
