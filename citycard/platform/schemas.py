"""Tenant schemas: the template every tenant is cloned from, kept in step with the migrations.

A new tenant's schema is a copy of ``settings.TENANT_BASE_SCHEMA`` (tables, indexes, constraints,
triggers, sequences and the template's rows, including ``django_migrations``) made by
:mod:`citycard.platform.schema_clone`, so creating a tenant costs the same however many migrations exist
and however many tenants there already are. The template's month partitions of the transactions are not
copied: a tenant's are made when its first taps arrive (``terminals.partitions``).
``citycard migrate`` migrates the public schema, then the template, then every tenant.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.utils.translation import gettext
from django_tenants.utils import schema_exists

from citycard.platform.errors import DomainError
from citycard.platform.schema_clone import schema_copy

_template_current = False


def template_schema_name() -> str:
    return settings.TENANT_BASE_SCHEMA


def _pending_template_migrations() -> set[tuple[str, str]]:
    """Migrations the code has that the template schema has not recorded."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    wanted = set(loader.graph.nodes)
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT app, name FROM {connection.ops.quote_name(template_schema_name())}.django_migrations"
        )
        recorded = set(cur.fetchall())
    return wanted - recorded


def template_migrate(verbosity: int = 0) -> None:
    """Create the template schema if missing and apply every tenant migration to it."""
    global _template_current
    name = template_schema_name()
    connection.set_schema_to_public()
    if not schema_exists(name):
        with connection.cursor() as cur:
            cur.execute(f"CREATE SCHEMA {connection.ops.quote_name(name)}")
    call_command("migrate_schemas", tenant=True, schema_name=name, interactive=False, verbosity=verbosity)
    connection.set_schema_to_public()
    _template_current = True


def template_ensure_current() -> None:
    """Migrate the template when it is missing or behind (checked once per process)."""
    global _template_current
    if _template_current:
        return
    connection.set_schema_to_public()
    if not schema_exists(template_schema_name()) or _pending_template_migrations():
        template_migrate()
    _template_current = True


def schema_clone_from_template(schema_name: str) -> None:
    """Create ``schema_name`` as a copy of the template (inside the caller's transaction)."""
    if schema_name in {settings.PUBLIC_SCHEMA_NAME, template_schema_name()} or schema_name.startswith("pg_"):
        raise DomainError(
            gettext("schema name %(schema_name)r is reserved") % {"schema_name": schema_name},
            code="reserved",
            field="code",
        )
    template_ensure_current()
    connection.set_schema_to_public()
    if schema_exists(schema_name):
        raise DomainError(
            gettext("a schema named %(schema_name)r already exists in the database")
            % {"schema_name": schema_name},
            code="duplicate",
            field="code",
        )
    schema_copy(template=template_schema_name(), schema=schema_name)
    connection.set_schema_to_public()


def schema_drop(schema_name: str) -> None:
    if schema_name in {settings.PUBLIC_SCHEMA_NAME, template_schema_name()}:
        raise DomainError(
            gettext("schema %(schema_name)r cannot be dropped") % {"schema_name": schema_name},
            code="reserved",
        )
    with connection.cursor() as cur:
        cur.execute(f"DROP SCHEMA IF EXISTS {connection.ops.quote_name(schema_name)} CASCADE")
