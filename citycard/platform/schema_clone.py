"""Copy the template schema into a new tenant schema with DDL generated once per template state.

Why not django-tenants' ``clone_schema`` SQL function: it re-reads the catalogs through
``information_schema`` views for every table and column, and those views scan every schema in the
database, so creating a tenant got slower with each tenant (0.12 s with none, 1.2 s with 275). Here the
template's definition is read once from ``pg_catalog`` (filtered by the template's namespace oid), turned
into one DDL script with unqualified names, cached in the process keyed by the template's migration
state, and replayed with ``search_path`` pointing at the new schema: the cost depends on the size of the
template only. See docs/architecture.md, "Creating a tenant".

Handled: functions, sequences, tables (identity and generated columns, defaults, collations), partitioned
tables, constraints (foreign keys last, inherited ones skipped), indexes, triggers, views, the template's
rows (``django_migrations`` and any seed rows) and sequence positions. Anything else in the template
(materialized views, foreign tables, types) is refused with a message rather than skipped.

A partitioned table is copied without the template's partitions: which partitions a tenant needs depends on
the day it is created, and each ``CREATE TABLE … PARTITION OF`` makes PostgreSQL scan the whole of
``pg_constraint`` for foreign keys referencing the parent (``CloneFkReferenced``: there is no index for it),
a scan that grows with every tenant (942k rows, 0.14 s, at 3,000 tenants). The app owning the table makes a
tenant's partitions when it first needs them (``terminals.partitions``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from django.db import connection, transaction

_FUNCTION_HEADER = re.compile(r"^CREATE OR REPLACE FUNCTION (\"?[^\s.(]+\"?)\.", re.MULTILINE)


@dataclass(frozen=True)
class _TemplateScript:
    state: str
    ddl_before_data: str
    data_tables: tuple[tuple[str, str], ...]  # (quoted table, quoted column list) holding template rows
    ddl_after_data: str
    sequences: tuple[tuple[str, str | None, str | None], ...]  # (quoted sequence, owner table, owner column)


_cache: dict[str, _TemplateScript] = {}
_STORAGE = {"p": "PLAIN", "e": "EXTERNAL", "m": "MAIN", "x": "EXTENDED"}  # pg_attribute.attstorage


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


def _template_state(cur, template: str) -> str:
    cur.execute(f"SELECT app || '.' || name FROM {_q(template)}.django_migrations ORDER BY app, name")
    migrations = "\n".join(row[0] for row in cur.fetchall())
    # The objects that belong to the template's namespace (tables, sequences, views, functions, types), read
    # through pg_depend's index on the referenced object: pg_class has no index on relnamespace, and a scan
    # of it grows with every tenant (0.3 s a clone at 900 tenants, the whole cost of creating one).
    cur.execute(
        "SELECT count(*), coalesce(max(d.objid::bigint), 0) FROM pg_depend d"
        " WHERE d.refclassid = 'pg_namespace'::regclass"
        " AND d.refobjid = (SELECT oid FROM pg_namespace WHERE nspname = %s)",
        [template],
    )
    count, max_oid = cur.fetchone()
    return hashlib.sha256(f"{migrations}|{count}|{max_oid}".encode()).hexdigest()


def _build(cur, template: str, state: str) -> _TemplateScript:
    cur.execute("SELECT oid FROM pg_namespace WHERE nspname = %s", [template])
    ns = cur.fetchone()[0]
    cur.execute("SELECT current_setting('search_path')")
    saved_path = cur.fetchone()[0]
    # With the template first in the search path the catalog functions print its names unqualified.
    cur.execute("SELECT set_config('search_path', %s, true)", [f"{_q(template)}, public"])
    try:
        return _build_unqualified(cur, ns, template, state)
    finally:
        cur.execute("SELECT set_config('search_path', %s, true)", [saved_path])


def _build_unqualified(cur, ns: int, template: str, state: str) -> _TemplateScript:
    before: list[str] = []
    after: list[str] = []

    cur.execute(
        "SELECT c.relname, c.relkind FROM pg_class c WHERE c.relnamespace = %s"
        " AND c.relkind NOT IN ('r', 'p', 'S', 'i', 'I', 'v', 't', 'c')",
        [ns],
    )
    unsupported = cur.fetchall()
    if unsupported:
        raise RuntimeError(f"the template schema holds objects tenant cloning cannot copy: {unsupported}")

    cur.execute(
        "SELECT pg_get_functiondef(p.oid) FROM pg_proc p WHERE p.pronamespace = %s AND p.prokind IN ('f', 'p')"
        " ORDER BY p.proname",
        [ns],
    )
    for (definition,) in cur.fetchall():
        before.append(_FUNCTION_HEADER.sub("CREATE OR REPLACE FUNCTION ", definition, count=1) + ";")

    # Free-standing sequences (identity sequences come with their columns).
    cur.execute(
        "SELECT c.relname, s.seqtypid::regtype, s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache,"
        " s.seqcycle FROM pg_class c JOIN pg_sequence s ON s.seqrelid = c.oid"
        " WHERE c.relnamespace = %s AND c.relkind = 'S'"
        " AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'i')",
        [ns],
    )
    for name, typ, start, inc, smin, smax, cache, cycle in cur.fetchall():
        before.append(
            f"CREATE SEQUENCE {_q(name)} AS {typ} INCREMENT {inc} MINVALUE {smin} MAXVALUE {smax}"
            f" START {start} CACHE {cache}{' CYCLE' if cycle else ''};"
        )

    # Tables, partitions left out (see the module's docstring).
    cur.execute(
        "SELECT c.oid, c.relname, c.relkind, c.relpersistence,"
        " CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END"
        " FROM pg_class c WHERE c.relnamespace = %s AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
        " ORDER BY c.relname",
        [ns],
    )
    tables = cur.fetchall()
    table_oids = [row[0] for row in tables]
    cur.execute(
        "SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity,"
        " a.attgenerated, pg_get_expr(d.adbin, d.adrelid),"
        " CASE WHEN a.attcollation <> t.typcollation THEN (SELECT quote_ident(collname) FROM pg_collation"
        "   WHERE oid = a.attcollation) END,"
        " CASE WHEN a.attstorage <> t.typstorage THEN a.attstorage END"
        " FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
        " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
        " WHERE a.attrelid = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attrelid, a.attnum",
        [table_oids],
    )
    columns: dict[int, list[tuple]] = {}
    for row in cur.fetchall():
        columns.setdefault(row[0], []).append(row[1:])

    data_candidates: list[tuple[int, str, str]] = []
    for oid, name, kind, persistence, partkey in tables:
        unlogged = "UNLOGGED " if persistence == "u" else ""
        defs = []
        insertable = []
        storages = []
        for attname, typ, notnull, identity, generated, default, collation, storage in columns.get(oid, []):
            if storage:
                storages.append(
                    f"ALTER TABLE {_q(name)} ALTER COLUMN {_q(attname)} SET STORAGE {_STORAGE[storage]};"
                )
            col = f"{_q(attname)} {typ}"
            if collation:
                col += f" COLLATE {collation}"
            if generated == "s":
                col += f" GENERATED ALWAYS AS ({default}) STORED"
            elif identity:
                col += f" GENERATED {'ALWAYS' if identity == 'a' else 'BY DEFAULT'} AS IDENTITY"
            elif default is not None:
                col += f" DEFAULT {default}"
            if notnull:
                col += " NOT NULL"
            defs.append(col)
            if generated != "s":
                insertable.append(_q(attname))
        partition = f" PARTITION BY {partkey}" if kind == "p" else ""
        before.append(f"CREATE {unlogged}TABLE {_q(name)} (\n  " + ",\n  ".join(defs) + f"\n){partition};")
        before.extend(storages)
        data_candidates.append((oid, _q(name), ", ".join(insertable)))

    # Which tables hold template rows (migrations record, seed rows): only those are copied.
    data_tables: list[tuple[str, str]] = []
    for _oid, qname, cols in data_candidates:
        cur.execute(f"SELECT EXISTS (SELECT 1 FROM {_q(template)}.{qname})")
        if cur.fetchone()[0]:
            data_tables.append((qname, cols))

    # Constraints declared on the template's own tables (not those a partition inherits); FKs last.
    cur.execute(
        "SELECT quote_ident(c.relname), quote_ident(con.conname), pg_get_constraintdef(con.oid), con.contype"
        " FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid"
        # A partition's CHECK constraints inherited from its parent have conparentid 0 but are not local.
        " WHERE c.relnamespace = %s AND NOT c.relispartition AND con.conparentid = 0 AND con.conislocal"
        " AND con.contype IN ('p', 'u', 'c', 'x', 'f')"
        " ORDER BY con.contype = 'f', c.relname, con.conname",
        [ns],
    )
    for table, conname, definition, _ in cur.fetchall():
        after.append(f"ALTER TABLE {table} ADD CONSTRAINT {conname} {definition};")

    # Indexes that do not back a constraint and are not a partition's copy of its parent's index.
    cur.execute(
        "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid"
        " JOIN pg_class t ON t.oid = i.indrelid"
        " WHERE ic.relnamespace = %s AND NOT t.relispartition"
        " AND NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = i.indexrelid AND con.contype IN"
        "   ('p', 'u', 'x'))"
        " AND NOT EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = i.indexrelid)"
        " ORDER BY ic.relname",
        [ns],
    )
    # pg_get_indexdef and pg_get_triggerdef qualify names whatever the search path; drop the template's.
    qualified = re.compile(rf"(?<=[\s(])(?:{re.escape(_q(template))}|{re.escape(template)})\.")
    # A partitioned table's index prints as "ON ONLY parent", which would not reach the partitions.
    after.extend(qualified.sub("", row[0]).replace(" ON ONLY ", " ON ", 1) + ";" for row in cur.fetchall())

    cur.execute(
        "SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
        " WHERE c.relnamespace = %s AND NOT c.relispartition AND NOT t.tgisinternal AND t.tgparentid = 0"
        " ORDER BY c.relname, t.tgname",
        [ns],
    )
    after.extend(qualified.sub("", row[0]) + ";" for row in cur.fetchall())

    cur.execute(
        "SELECT quote_ident(c.relname), pg_get_viewdef(c.oid) FROM pg_class c"
        " WHERE c.relnamespace = %s AND c.relkind = 'v' ORDER BY c.oid",
        [ns],
    )
    after.extend(f"CREATE VIEW {name} AS {definition}" for name, definition in cur.fetchall())

    cur.execute(
        "SELECT s.relname, t.relname, a.attname FROM pg_class s"
        " LEFT JOIN pg_depend d ON d.objid = s.oid AND d.classid = 'pg_class'::regclass"
        "   AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')"
        " LEFT JOIN pg_class t ON t.oid = d.refobjid"
        " LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid"
        " WHERE s.relnamespace = %s AND s.relkind = 'S'",
        [ns],
    )
    sequences = tuple(
        (_q(seq), _q(table) if table else None, column) for seq, table, column in cur.fetchall()
    )
    return _TemplateScript(
        state=state,
        ddl_before_data="\n".join(before),
        data_tables=tuple(data_tables),
        ddl_after_data="\n".join(after),
        sequences=sequences,
    )


def template_script(template: str) -> _TemplateScript:
    """The cached DDL of ``template``, rebuilt when its migrations or objects changed."""
    with connection.cursor() as cur:
        state = _template_state(cur, template)
        script = _cache.get(template)
        if script is None or script.state != state:
            script = _build(cur, template, state)
            _cache[template] = script
    return script


def schema_copy(*, template: str, schema: str) -> None:
    """Create ``schema`` as a copy of ``template`` inside the caller's transaction."""
    script = template_script(template)
    src, dst = _q(template), _q(schema)
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SELECT current_setting('search_path')")
        saved_path = cur.fetchone()[0]
        cur.execute(f"CREATE SCHEMA {dst}")
        cur.execute("SELECT set_config('search_path', %s, true)", [f"{dst}, public"])
        try:
            cur.execute(script.ddl_before_data)
            for table, cols in script.data_tables:
                cur.execute(
                    f"INSERT INTO {dst}.{table} ({cols}) OVERRIDING SYSTEM VALUE SELECT {cols} FROM {src}.{table}"
                )
            if script.ddl_after_data:
                cur.execute(script.ddl_after_data)
            copied = {table for table, _ in script.data_tables}
            for seq, table, column in script.sequences:
                if table is None:
                    cur.execute(f"SELECT setval('{dst}.{seq}', last_value, is_called) FROM {src}.{seq}")
                elif table in copied:
                    # By the column, not the name: a renamed table keeps its old identity sequence name.
                    cur.execute(
                        f"SELECT setval(pg_get_serial_sequence(%s, %s), m)"
                        f" FROM (SELECT max({_q(column)}) AS m FROM {dst}.{table}) x WHERE m IS NOT NULL",
                        [f"{dst}.{table}", column],
                    )
        finally:
            cur.execute("SELECT set_config('search_path', %s, true)", [saved_path])
