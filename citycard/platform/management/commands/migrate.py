"""`citycard migrate`: the public schema, then the template schema, then every tenant schema in parallel.

Keeping the template in step is what lets new tenants be cloned instead of migrated. The tenant schemas are
migrated by a pool of worker processes (``--processes``, default TENANT_MULTIPROCESSING_MAX_PROCESSES or
the CPU count) with progress, a report naming each schema that failed and why, and resume: a schema already
applied at the code's migrations is not visited again, so re-running after a fix retries only the failed
and missing ones (see citycard/platform/schema_migrate.py).
"""

from __future__ import annotations

import time

from django.core.management.base import CommandError
from django.utils.translation import gettext
from django_tenants.management.commands.migrate_schemas import MigrateSchemasCommand

from citycard.platform.schema_migrate import FAILED, default_processes, tenants_migrate
from citycard.platform.schemas import template_migrate
from citycard.platform.services import platform_bootstrap


class Command(MigrateSchemasCommand):
    help = "Migrate the public schema, the tenant template schema and every tenant schema (in parallel)."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument(
            "--processes",
            type=int,
            help="worker processes for the tenant schemas (default: TENANT_MULTIPROCESSING_MAX_PROCESSES "
            "or the number of CPUs; 1: one after another in this process)",
        )
        parser.add_argument(
            "--no-resume",
            action="store_true",
            help="visit every tenant schema, also those recorded as applied at the current migrations",
        )

    def handle(self, *args, **options):
        explicit = options.get("schema_name") or options.get("shared") or options.get("tenant")
        if explicit:
            super().handle(*args, **options)
            if options.get("shared") or options.get("schema_name") == "public":
                platform_bootstrap()
            return
        verbosity = int(options.get("verbosity", 1))
        super().handle(*args, **{**options, "shared": True, "tenant": False})
        platform_bootstrap()
        if verbosity:
            self.stdout.write(self.style.NOTICE("=== template schema"))
        template_migrate(verbosity=max(verbosity - 1, 0))
        self._tenants(options, verbosity)

    def _tenants(self, options, verbosity: int) -> None:
        processes = options.get("processes") or default_processes()
        began = time.perf_counter()
        last = [began]

        def progress(done: int, total: int, outcome) -> None:
            if outcome.status == FAILED:
                self.stderr.write(
                    gettext("[%(done)s/%(total)s] %(schema)s FAILED: %(error)s")
                    % {"done": done, "total": total, "schema": outcome.schema, "error": outcome.error}
                )
            now = time.perf_counter()
            if verbosity and (done == total or now - last[0] >= 5):
                last[0] = now
                self.stdout.write(
                    gettext("[%(done)s/%(total)s] %(rate).1f schemas/s")
                    % {"done": done, "total": total, "rate": done / max(now - began, 1e-9)}
                )

        report = tenants_migrate(processes=processes, resume=not options.get("no_resume"), progress=progress)
        if verbosity:
            self.stdout.write(
                self.style.NOTICE("=== tenant schemas")
                + " "
                + gettext(
                    "%(visited)s visited with %(processes)s processes in %(seconds).1f s: %(migrated)s migrated, "
                    "%(current)s already current, %(failed)s failed; %(skipped)s skipped (applied before)"
                )
                % {
                    "visited": len(report.outcomes),
                    "processes": processes,
                    "seconds": report.seconds,
                    "migrated": len(report.migrated),
                    "current": len(report.outcomes) - len(report.migrated) - len(report.failed),
                    "failed": len(report.failed),
                    "skipped": report.skipped,
                }
            )
        if report.failed:
            lines = [f"  {o.schema}: {o.error}" for o in report.failed]
            raise CommandError(
                gettext(
                    "%(failed)s tenant schema(s) failed to migrate (run `citycard migrate` again after the fix: "
                    "only these are retried):"
                )
                % {"failed": len(report.failed)}
                + "\n"
                + "\n".join(lines)
            )
