"""Month partitions of ``terminals_transaction`` (按月分区).

Months are Asia/Shanghai calendar months: the partition for 2025-03 holds taps from
2025-03-01 00:00+08:00 up to 2025-04-01 00:00+08:00. A new tenant's schema has none (the template's
partitions are not cloned): ingestion, the only writer of taps, makes the month a tap falls in on demand,
and the Celery beat task ``partitions_ensure_all`` makes this month and the next three in every tenant.
Why none at creation: each ``CREATE TABLE … PARTITION OF`` makes PostgreSQL scan the whole of
``pg_constraint`` (all tenants' constraints) for foreign keys referencing the parent, 0.14 s at 3,000
tenants, which would make creation slower with every tenant. Nothing here reads another tenant's tables:
each call works on the schema the connection is set to.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.db import DatabaseError, connection, transaction

from citycard.terminal_kit.beijing import BEIJING

PARENT = "terminals_transaction"
# duplicate_table, duplicate_object (the row type), unique_violation (a catalogue index)
_MADE_MEANWHILE = {"42P07", "42710", "23505"}

# Months known to exist per schema, filled only after the creating/observing transaction commits, so a
# rolled-back creation never leaves a stale entry.
_known: dict[str, set[tuple[int, int]]] = {}


def month_of(moment: dt.datetime) -> tuple[int, int]:
    local = moment.astimezone(BEIJING)
    return local.year, local.month


def months_around(today: dt.date, *, behind: int = 0, ahead: int = 3) -> list[tuple[int, int]]:
    index = today.year * 12 + today.month - 1
    return [(i // 12, i % 12 + 1) for i in range(index - behind, index + ahead + 1)]


def partition_name(year: int, month: int) -> str:
    return f"{PARENT}_y{year:04d}m{month:02d}"


def _bounds(year: int, month: int) -> tuple[str, str]:
    nxt = (year + 1, 1) if month == 12 else (year, month + 1)
    return f"{year:04d}-{month:02d}-01 00:00:00+08", f"{nxt[0]:04d}-{nxt[1]:02d}-01 00:00:00+08"


def partitions_existing() -> set[tuple[int, int]]:
    """The months that have a partition in the current schema."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = to_regclass(%s)",
            [f"{connection.ops.quote_name(connection.schema_name)}.{PARENT}"],
        )
        names = [row[0] for row in cur.fetchall()]
    found = set()
    for name in names:
        tail = name[len(PARENT) + 2 :]  # "2025m03"
        if name.startswith(PARENT + "_y") and len(tail) == 7:
            found.add((int(tail[:4]), int(tail[5:])))
    return found


def partitions_ensure(months: Iterable[tuple[int, int]]) -> list[str]:
    """Create the month partitions missing in the current schema; return the names created.

    Costs no query when every month is known to exist (after a commit has been seen), one when not.
    """
    schema = connection.schema_name
    wanted = set(months)
    known = _known.get(schema, set())
    if wanted <= known:
        return []
    existing = partitions_existing()
    created = []
    qschema = connection.ops.quote_name(schema)
    with connection.cursor() as cur:
        for year, month in sorted(wanted - existing):
            low, high = _bounds(year, month)
            name = partition_name(year, month)
            try:
                with transaction.atomic():
                    cur.execute(
                        f"CREATE TABLE IF NOT EXISTS {qschema}.{name} PARTITION OF {qschema}.{PARENT}"
                        f" FOR VALUES FROM ('{low}') TO ('{high}')"
                    )
            except DatabaseError as exc:
                # IF NOT EXISTS looks before waiting for the parent's lock: when another transaction made
                # the same month meanwhile (two uploads of a new month, the beat task), this one finds it
                # committed once it has the lock, and the month is there to use.
                if getattr(exc.__cause__, "pgcode", None) not in _MADE_MEANWHILE:
                    raise
                continue
            created.append(name)
    seen = existing | wanted

    def remember() -> None:
        _known.setdefault(schema, set()).update(seen)

    transaction.on_commit(remember)
    return created


def partitions_ahead(*, today: dt.date | None = None) -> list[str]:
    """Make sure this month and the next three have partitions in the current schema (a month gone by
    had its partition while it was ahead; a late tap of an older month gets one on demand)."""
    today = today or dt.datetime.now(BEIJING).date()
    return partitions_ensure(months_around(today))


def forget_known() -> None:
    """Drop the in-process cache (tests that drop partitions)."""
    _known.clear()
