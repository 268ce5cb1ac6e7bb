"""Commits that do not wait for the disk, for work that is redone identically when a crash loses it.

A national network's cycle commits ~600 small transactions in its per-tenant jobs (one outbox collected, one
issuer's validation answered), each waiting for its WAL flush on a disk shared with everything else. Their
work is idempotent and re-run when missing (an outbox message left pending is collected again; an issuer
whose answer is missing is asked again by the validation step), so they may commit with
``synchronous_commit = off``: PostgreSQL writes the WAL in order, so the next commit that does wait (the
cycle step's own) makes them durable too, and a crash before it (within ~3 × ``wal_writer_delay``) loses such
a transaction whole — never a part of it, never out of order.
"""

from __future__ import annotations

from django.db import connection


def commit_unawaited() -> bool:
    """Inside ``atomic``: this transaction's commit returns without waiting for its WAL to reach the disk
    (``SET LOCAL``: it ends with the transaction, so it is safe behind a transaction-pooling PgBouncer).
    Only when the caller's block is the outermost one — a transaction somebody else opened keeps its
    durability. Returns whether it applied."""
    if not connection.in_atomic_block or len(connection.atomic_blocks) != 1:
        return False
    with connection.cursor() as cur:
        cur.execute("SET LOCAL synchronous_commit TO off")
    return True
