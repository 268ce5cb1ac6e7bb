"""`citycard graphql schema [--check]`: write (or check) the checked-in schema files of both endpoints."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext

from citycard.graphql.schema_files import SCHEMA_FILES, schema_files_stale, schema_files_write


class Command(BaseCommand):
    help = "The GraphQL schema files (citycard/graphql/schema_tenant.graphql, schema_platform.graphql)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        schema = sub.add_parser("schema", help="regenerate the schema files from the code")
        schema.add_argument("--check", action="store_true", help="only check; exit 1 if a file is stale")

    def handle(self, *args, **opts):
        if opts["check"]:
            stale = schema_files_stale()
            if stale:
                names = ", ".join(p.name for p in stale)
                raise CommandError(
                    gettext("stale: %(files)s; run `citycard graphql schema` and commit the result")
                    % {"files": names}
                )
            self.stdout.write(gettext("schema files match the code"))
            return
        written = schema_files_write()
        for path in written:
            self.stdout.write(gettext("wrote %(path)s") % {"path": path})
        if not written:
            self.stdout.write(
                gettext("%(count)s schema files already match the code") % {"count": len(SCHEMA_FILES)}
            )
