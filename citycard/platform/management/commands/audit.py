"""`citycard audit verify`: walk every hash chain and report tampering."""

from __future__ import annotations

from django.core.management.base import CommandError
from django.utils.translation import gettext
from django_tenants.utils import schema_context

from citycard.platform.audit.selectors import audit_verify
from citycard.platform.errors import NotFound
from citycard.platform.management.base import PlatformCommand
from citycard.platform.models import Tenant


class Command(PlatformCommand):
    help = "Verify the audit log's hash chains (the public schema's and every tenant's)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        verify = sub.add_parser("verify", help="detect edited or deleted entries")
        verify.add_argument(
            "--tenant", action="append", help="only these tenants ('public' for the platform)"
        )

    def handle(self, *args, **opts):
        schemas = opts.get("tenant") or [
            "public",
            *list(
                Tenant.objects.exclude(schema_name="public")
                .order_by("code")
                .values_list("schema_name", flat=True)
            ),
        ]
        broken = 0
        for schema in schemas:
            if schema != "public" and not Tenant.objects.filter(schema_name=schema).exists():
                raise NotFound(gettext("no tenant with code %(schema)r") % {"schema": schema}, field="tenant")
            with schema_context(schema):
                result = audit_verify()
            if result.ok:
                self.stdout.write(
                    gettext("%(schema)s: ok, %(entries)s entries")
                    % {"schema": schema, "entries": result.entries}
                )
            else:
                broken += 1
                for problem in result.problems:
                    self.stdout.write(
                        gettext("%(schema)s: TAMPERED: %(problem)s") % {"schema": schema, "problem": problem}
                    )
        if broken:
            raise CommandError(gettext("%(broken)s audit chain(s) failed verification") % {"broken": broken})
