"""Tenant migrations across every tenant schema at once (全量租户迁移): a pool of worker processes, one schema
at a time each, with the state of every schema kept in the public schema so a run that failed or stopped is
resumed rather than repeated.

Why not ``migrate_schemas`` schema after schema: for each schema Django builds the migration graph and then
the project state of every applied migration before it can apply the new one, about a second of CPU a
schema, so 3,000 tenants took most of an hour. Here each worker builds the graph once and keeps the project
state of each set of applied migrations it has seen (every tenant cloned from the same template has the same
set), so a schema costs the new migration's own SQL and the reading of its ``django_migrations``.

What a run does:

* the target is the graph's leaf migrations; a schema recorded in :class:`SchemaMigration` as applied at that
  target is not visited (``resume``); every other tenant schema is, in code order;
* each schema's pending migrations are applied in the schema with the public schema behind it on the search
  path (as ``migrate_schemas`` does), each migration in its own transaction: a schema that fails keeps what
  it had, is recorded as failed with the error, and the others go on;
* no ``post_migrate`` signal is sent per schema: content types and permissions live in the public schema and
  are made by its own migrate.

How the workers start (``pool_start_method``): forked when this process runs no other thread, as
``citycard migrate`` does — a worker is ready in milliseconds with Django and the migration modules
loaded. A fork copies every lock as it is at that instant, and the child has only the thread that forked:
a lock another thread held then (the embedded PostgreSQL's start lock, taken by any thread opening a
connection; a buffered stream's; a C library's) stays held in the child for ever, and its worker never
finishes. So a process with other threads running (a long-lived process that ran other commands, a test
session with servers in threads) spawns its workers instead: fresh interpreters that set Django up
with this process's database and migration settings (``citycard.platform.spawn``), a second or two each.

How they end: once every schema is done the pool is closed and each worker ends on its own; only a run
that fails or is interrupted ends them with SIGTERM, and a forked worker takes SIGTERM's default action
(``_worker_start``), whatever handler its parent installed.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.pool
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, connections
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.recorder import MigrationRecorder
from django.db.migrations.state import ProjectState
from django.utils import timezone

from citycard.platform import spawn
from citycard.platform.models import SchemaMigration, SchemaMigrationStatus, Tenant

APPLIED, FAILED = SchemaMigrationStatus.APPLIED, SchemaMigrationStatus.FAILED


@dataclass(frozen=True)
class SchemaOutcome:
    schema: str
    status: str  # APPLIED (also when nothing was pending) or FAILED
    applied: tuple[str, ...]  # the migrations this run applied, "app.name"
    error: str
    seconds: float


@dataclass
class MigrateReport:
    target: str
    skipped: int = 0  # already applied at the target
    outcomes: list[SchemaOutcome] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[SchemaOutcome]:
        return [o for o in self.outcomes if o.status == FAILED]

    @property
    def migrated(self) -> list[SchemaOutcome]:
        return [o for o in self.outcomes if o.status == APPLIED and o.applied]


def migration_target() -> str:
    """The leaf migrations of the code, "app.name" sorted: what every tenant schema should reach."""
    executor = MigrationExecutor(connection)
    return ",".join(f"{app}.{name}" for app, name in sorted(executor.loader.graph.leaf_nodes()))


def tenant_schemas() -> list[str]:
    """Every tenant schema (not the public one), in code order."""
    connection.set_schema_to_public()
    return list(
        Tenant.objects.exclude(schema_name=settings.PUBLIC_SCHEMA_NAME)
        .order_by("schema_name")
        .values_list("schema_name", flat=True)
    )


# --- one worker --------------------------------------------------------------------------------------------

_executor: MigrationExecutor | None = None
_states: dict[frozenset, ProjectState] = {}


def _state_before(executor: MigrationExecutor, applied: frozenset) -> ProjectState:
    """The project state with ``applied`` migrations, rendered once per set and cloned for each schema."""
    state = _states.get(applied)
    if state is None:
        state = executor._create_project_state(with_applied_migrations=True)
        state.apps  # noqa: B018 -- rendering the models is the costly part: once, then cloned
        _states[applied] = state
    return state.clone()


def _has_migrations_table(schema: str) -> bool:
    """Whether ``schema`` has its django_migrations table, by name (an index lookup, whatever the catalogue)."""
    connection.set_schema_to_public()
    with connection.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", [f"{connection.ops.quote_name(schema)}.django_migrations"])
        return cur.fetchone()[0] is not None


def schema_migrate_one(schema: str) -> SchemaOutcome:
    """Apply the pending migrations of one tenant schema (in this process, on its connection)."""
    global _executor
    start = time.perf_counter()
    applied: list[str] = []
    try:
        if not _has_migrations_table(schema):
            connection.set_schema(schema, include_public=False)
            MigrationRecorder(connection).ensure_schema()  # its own django_migrations, never public's
        connection.set_schema(schema)
        if _executor is None:
            _executor = MigrationExecutor(connection)
        executor = _executor
        # The executor's recorder knows the table exists (checked above): a new recorder would list every
        # visible table to find it, a scan of pg_class that grows with every tenant.
        executor.loader.applied_migrations = executor.recorder.applied_migrations()
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        if plan:
            state = _state_before(executor, frozenset(executor.loader.applied_migrations))
            for migration, _backwards in plan:
                state = executor.apply_migration(state, migration)
                applied.append(f"{migration.app_label}.{migration.name}")
        outcome = SchemaOutcome(schema, APPLIED, tuple(applied), "", time.perf_counter() - start)
    except Exception as exc:  # one schema's failure is reported, the others go on
        pending = f" (after {', '.join(applied)})" if applied else ""
        message = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        outcome = SchemaOutcome(
            schema, FAILED, tuple(applied), message + pending, time.perf_counter() - start
        )
        connection.close()  # whatever the failure left on the connection, the next schema starts clean
    finally:
        if connection.connection is not None:
            connection.set_schema_to_public()
    return outcome


def _worker_start() -> None:
    # The parent closed its connections before the fork; each worker opens its own.
    for conn in connections.all():
        conn.connection = None
    # A run that fails or is interrupted ends its workers with SIGTERM. A handler the parent installed (the
    # demo's turns SIGTERM into sys.exit) runs only between bytecodes, never in a worker blocked in C: the
    # default action ends it wherever it is.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def threads_running() -> int:
    """This process's threads: Python's, and on Linux every native one (a C library's) as the kernel lists
    them."""
    try:
        native = len(os.listdir("/proc/self/task"))
    except OSError:
        native = 1
    return max(threading.active_count(), native)


def pool_start_method() -> str:
    """How the pool starts its workers: "fork" when this thread is the process's only one, else "spawn" (see
    the module's docstring)."""
    return "fork" if threads_running() == 1 else "spawn"


def workers_start(processes: int, *, start_method: str) -> multiprocessing.pool.Pool:
    """A pool of ``processes`` workers for ``schema_migrate_one``, started by ``start_method``."""
    if start_method == "fork":
        connections.close_all()  # a forked worker must not share the parent's socket
        return multiprocessing.get_context("fork").Pool(processes, initializer=_worker_start)
    return multiprocessing.get_context("spawn").Pool(
        processes, initializer=spawn.django_worker_start, initargs=(spawn.settings_carried(),)
    )


# --- the run -----------------------------------------------------------------------------------------------


def _record(outcome: SchemaOutcome, target: str) -> None:
    row, _ = SchemaMigration.objects.get_or_create(
        schema_name=outcome.schema,
        defaults={"target": target, "status": outcome.status, "updated_at": timezone.now()},
    )
    row.target = target
    row.status = outcome.status
    row.applied = ",".join(outcome.applied)
    row.error = outcome.error
    row.attempts += 1
    row.seconds = outcome.seconds
    row.updated_at = timezone.now()
    row.save()


def default_processes() -> int:
    return int(getattr(settings, "TENANT_MULTIPROCESSING_MAX_PROCESSES", 0) or os.cpu_count() or 1)


def tenants_migrate(
    *,
    processes: int | None = None,
    schemas: Iterable[str] | None = None,
    resume: bool = True,
    progress: Callable[[int, int, SchemaOutcome], None] | None = None,
    start_method: str | None = None,
) -> MigrateReport:
    """Bring every tenant schema (or ``schemas``) to the code's migrations with ``processes`` workers (1: in
    this process), started by ``start_method`` ("fork" or "spawn"; default ``pool_start_method()``). With
    ``resume``, schemas recorded as applied at the current target are skipped. The template schema is the
    caller's to migrate first (``citycard migrate`` does)."""
    global _executor
    began = time.perf_counter()
    # The graph and states of an earlier run in this process may be of other migrations: start afresh (and
    # so do the workers started below).
    _executor = None
    _states.clear()
    connection.set_schema_to_public()
    target = migration_target()
    wanted = list(schemas) if schemas is not None else tenant_schemas()
    done = set()
    if resume:
        done = set(
            SchemaMigration.objects.filter(schema_name__in=wanted, status=APPLIED, target=target).values_list(
                "schema_name", flat=True
            )
        )
    todo = [s for s in wanted if s not in done]
    report = MigrateReport(target=target, skipped=len(wanted) - len(todo))
    processes = max(1, min(processes or default_processes(), len(todo) or 1))

    def collect(outcomes: Iterable[SchemaOutcome]) -> None:
        for outcome in outcomes:
            connection.set_schema_to_public()
            _record(outcome, target)
            report.outcomes.append(outcome)
            if progress:
                progress(len(report.outcomes), len(todo), outcome)

    if processes == 1:
        collect(schema_migrate_one(s) for s in todo)
    else:
        workers = workers_start(processes, start_method=start_method or pool_start_method())
        try:
            collect(workers.imap_unordered(schema_migrate_one, todo, chunksize=1))
            workers.close()  # every schema is done: each worker ends once it has started, on its own
        except BaseException:
            workers.terminate()
            raise
        finally:
            workers.join()
    connection.set_schema_to_public()
    report.seconds = time.perf_counter() - began
    return report
