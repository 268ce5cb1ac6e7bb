"""`citycard migrate`: the public schema, then the template schema, then every tenant.

Keeping the template in step is what lets new tenants be cloned instead of migrated.
"""

from __future__ import annotations

from django_tenants.management.commands.migrate_schemas import MigrateSchemasCommand

from citycard.platform.schemas import template_migrate
from citycard.platform.services import platform_bootstrap


class Command(MigrateSchemasCommand):
    help = "Migrate the public schema, the tenant template schema and every tenant schema."

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
        super().handle(*args, **{**options, "shared": False, "tenant": True})
