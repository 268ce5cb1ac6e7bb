"""Store and forward (脱机存储转发): the terminal's durable SQLite (WAL) queue of taps and batches.

Every step a tap goes through is committed before the next happens: the PSAM counts the terminal
sequence number, the tap is written ``pending`` (with that number) before DEBIT, ``complete`` (with its
TAC) before the rider is told, and only then joined to a batch. A batch keeps its id and bytes across
retries and is deleted only after the back office's signed acknowledgement for exactly that batch
verifies. Killing the process at any point
loses nothing and duplicates nothing (the server's natural key absorbs a resend).

A batch the back office refuses for good (a 4xx: it can never be taken as sent) is set aside
(``batches_set_aside``, with the refusal's status, code, message and time) so the batches after it go on;
its taps stay with it until a person requeues it (the same bytes again, or its taps in a new batch) or
drops it with a reason (``citycard-terminal queue``).
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.i18n import N_, said
from citycard.terminal_kit.signing import sign_document, verify_document

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS taps (
    id INTEGER PRIMARY KEY,
    card_no TEXT NOT NULL,
    card_counter INTEGER NOT NULL,
    terminal_seq INTEGER NOT NULL UNIQUE,
    state TEXT NOT NULL CHECK (state IN ('pending', 'torn', 'complete', 'void')),
    record TEXT NOT NULL,
    batch_id TEXT
);
CREATE INDEX IF NOT EXISTS taps_card ON taps (card_no, state);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    document TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS batches_set_aside (
    id INTEGER PRIMARY KEY,
    batch_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    document TEXT NOT NULL,
    taps INTEGER NOT NULL,
    status INTEGER NOT NULL,
    code TEXT NOT NULL,
    message TEXT NOT NULL,
    set_aside_at TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'set_aside' CHECK (state IN ('set_aside', 'requeued', 'rebatched', 'dropped')),
    decided_at TEXT,
    reason TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS batches_set_aside_open ON batches_set_aside (batch_id) WHERE state = 'set_aside';
CREATE TABLE IF NOT EXISTS code_nonces (
    tenant TEXT NOT NULL,
    nonce TEXT NOT NULL,
    forget_after INTEGER NOT NULL,
    PRIMARY KEY (tenant, nonce)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS code_nonces_forget ON code_nonces (forget_after);
CREATE TABLE IF NOT EXISTS documents (
    kind TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    body TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class StoredTap:
    id: int
    card_no: str
    card_counter: int
    terminal_seq: int
    state: str
    record: dict[str, Any]


@dataclass(frozen=True)
class QueuedBatch:
    """A batch waiting for its acknowledgement."""

    batch_id: str
    created_at: str
    taps: int


@dataclass(frozen=True)
class SetAsideBatch:
    """A batch the back office refused for good, and what became of it.

    ``state``: ``set_aside`` (waiting for a person), ``requeued`` (sent again as it was), ``rebatched`` (its
    taps went back to the queue for a new batch) or ``dropped`` (its taps deleted; ``reason`` says why)."""

    batch_id: str
    created_at: str
    taps: int
    status: int
    code: str
    message: str
    set_aside_at: str
    state: str
    decided_at: str | None
    reason: str | None


@dataclass(frozen=True)
class QueueState:
    """What ``citycard-terminal queue`` shows: batches waiting, taps not yet in one, set-aside batches."""

    batches: list[QueuedBatch]
    unbatched: int  # complete taps not yet in a batch
    unsettled: int  # taps pending or torn: waiting for their card to come back
    set_aside: list[SetAsideBatch]


class BatchNotSetAside(LookupError):
    """No batch of that id is set aside (waiting for a decision)."""


_SET_ASIDE_COLUMNS = (
    "batch_id, created_at, taps, status, code, message, set_aside_at, state, decided_at, reason"
)


class TapStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.db = sqlite3.connect(self.path, isolation_level=None, timeout=10)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # a tap the rider was told about survives power loss
        self.db.executescript("BEGIN;" + _SCHEMA + "COMMIT;")  # one transaction: one sync, not one a table

    def close(self) -> None:
        self.db.close()

    # --- terminal sequence (the PSAM's terminal transaction serial) -----------------------------------

    def last_terminal_seq(self) -> int:
        """The highest terminal sequence number this queue has seen (a PSAM put in must start above it)."""
        row = self.db.execute(
            "SELECT max(v) FROM (SELECT value AS v FROM meta WHERE name = 'terminal_seq' "
            "UNION ALL SELECT max(terminal_seq) FROM taps WHERE terminal_seq >= 0)"  # not the code rides' -n
        ).fetchone()
        return int(row[0] or 0)

    # --- taps --------------------------------------------------------------------------------------

    def tap_pending(self, record: dict[str, Any]) -> int:
        """Write the tap ``pending`` (before DEBIT), and keep its terminal serial as the high-water mark."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            cur = self.db.execute(
                "INSERT INTO taps (card_no, card_counter, terminal_seq, state, record) VALUES (?, ?, ?, 'pending', ?)",
                (record["card_no"], record["card_counter"], record["terminal_seq"], json.dumps(record)),
            )
            self.db.execute(
                "INSERT INTO meta (name, value) VALUES ('terminal_seq', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)",
                (record["terminal_seq"],),
            )
        return int(cur.lastrowid)

    def _set(self, tap_id: int, state: str, record: dict[str, Any] | None = None) -> None:
        with self.db:
            if record is None:
                self.db.execute("UPDATE taps SET state = ? WHERE id = ?", (state, tap_id))
            else:
                self.db.execute(
                    "UPDATE taps SET state = ?, record = ? WHERE id = ?", (state, json.dumps(record), tap_id)
                )

    def tap_complete(self, tap_id: int, record: dict[str, Any]) -> None:
        self._set(tap_id, "complete", record)

    def tap_torn(self, tap_id: int) -> None:
        self._set(tap_id, "torn")

    def tap_void(self, tap_id: int) -> None:
        self._set(tap_id, "void")

    def torn_for(self, card_no: str) -> StoredTap | None:
        row = self.db.execute(
            "SELECT id, card_no, card_counter, terminal_seq, state, record FROM taps "
            "WHERE card_no = ? AND state IN ('pending', 'torn') ORDER BY id DESC LIMIT 1",
            (card_no,),
        ).fetchone()
        return StoredTap(*row[:5], json.loads(row[5])) if row else None

    def taps(self, state: str | None = None) -> list[StoredTap]:
        sql = "SELECT id, card_no, card_counter, terminal_seq, state, record FROM taps"
        rows = self.db.execute(
            sql + (" WHERE state = ?" if state else "") + " ORDER BY id", (state,) if state else ()
        )
        return [StoredTap(*r[:5], json.loads(r[5])) for r in rows]

    # --- downloaded documents (hotlist, rules) ------------------------------------------------------

    def document_put(self, *, kind: str, version: int, body: dict[str, Any]) -> None:
        """Keep what the terminal holds of a downloaded document (verified before it gets here), so a
        restarted terminal works offline with what it had."""
        with self.db:
            self.db.execute(
                "INSERT INTO documents (kind, version, body) VALUES (?, ?, ?) "
                "ON CONFLICT (kind) DO UPDATE SET version = excluded.version, body = excluded.body",
                (kind, version, json.dumps(body, ensure_ascii=False)),
            )

    def document_get(self, kind: str) -> tuple[int, dict[str, Any]] | None:
        row = self.db.execute("SELECT version, body FROM documents WHERE kind = ?", (kind,)).fetchone()
        return (int(row[0]), json.loads(row[1])) if row else None

    # --- citizen codes seen (replay memory) -----------------------------------------------------------

    def code_nonce_claim(self, *, tenant: str, nonce: str, forget_after: int, now: int) -> bool:
        """Remember ``tenant``'s code nonce until ``forget_after`` (Unix seconds); False if it is already
        remembered (a replay). Nonces whose code has expired are forgotten in the same transaction, so
        the memory holds at most the codes of the last lifetime."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("DELETE FROM code_nonces WHERE forget_after < ?", (now,))
            cur = self.db.execute(
                "INSERT OR IGNORE INTO code_nonces (tenant, nonce, forget_after) VALUES (?, ?, ?)",
                (tenant, nonce, forget_after),
            )
        return cur.rowcount == 1

    # --- rides paid by the citizen code (电子市民码乘车) ----------------------------------------------------

    def code_ride_record(
        self, *, record: dict[str, Any], tenant: str, nonce: str, forget_after: int, now: int
    ) -> dict[str, Any] | None:
        """Spend the code's nonce and queue its ride, in one transaction: the ride ``complete`` at once (no
        card was debited, nothing can tear), or None when the nonce is spent already (a replay; nothing
        written). A code ride goes through no PSAM, so it takes no terminal serial of its own: the record
        carries the serial of the PSAM's last purchase (the one it follows; 0 before any) and, as its card
        counter, the terminal's own count of code rides (1, 2, …), which makes its natural key its own. The
        ``terminal_seq`` column holds minus that count, clear of every PSAM serial. Returns the record."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("DELETE FROM code_nonces WHERE forget_after < ?", (now,))
            claimed = self.db.execute(
                "INSERT OR IGNORE INTO code_nonces (tenant, nonce, forget_after) VALUES (?, ?, ?)",
                (tenant, nonce, forget_after),
            )
            if claimed.rowcount != 1:
                return None
            row = self.db.execute("SELECT value FROM meta WHERE name = 'code_rides'").fetchone()
            count = int(row[0] if row else 0) + 1
            self.db.execute(
                "INSERT INTO meta (name, value) VALUES ('code_rides', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (count,),
            )
            record = {**record, "card_counter": count, "terminal_seq": self.last_terminal_seq()}
            self.db.execute(
                "INSERT INTO taps (card_no, card_counter, terminal_seq, state, record) "
                "VALUES (?, ?, ?, 'complete', ?)",
                (record["card_no"], count, -count, json.dumps(record, ensure_ascii=False)),
            )
        return record

    # --- batches -----------------------------------------------------------------------------------

    def batch_open(
        self,
        *,
        terminal_id: str,
        tenant: str,
        key: Ed25519PrivateKey,
        key_id: str,
        rule_version: int,
        hotlist_version: int,
        max_taps: int = 500,
        now: dt.datetime | None = None,
    ) -> dict[str, Any] | None:
        """The oldest unacknowledged batch (same id and bytes as before), or a new one of waiting taps."""
        row = self.db.execute("SELECT document FROM batches ORDER BY created_at, batch_id LIMIT 1").fetchone()
        if row:
            return json.loads(row[0])
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            rows = self.db.execute(
                "SELECT id, record FROM taps WHERE state = 'complete' AND batch_id IS NULL ORDER BY id LIMIT ?",
                (max_taps,),
            ).fetchall()
            if not rows:
                return None
            now = now or dt.datetime.now(BEIJING)
            batch_id = f"{terminal_id}-{uuid.uuid4().hex[:16]}"
            payload = {
                "batch_id": batch_id,
                "terminal_id": terminal_id,
                "tenant": tenant,
                "created_at": now.isoformat(timespec="seconds"),
                "rule_version": rule_version,
                "hotlist_version": hotlist_version,
                "transactions": [json.loads(r[1]) for r in rows],
            }
            document = sign_document(payload, key=key, key_id=key_id)
            self.db.execute(
                "INSERT INTO batches (batch_id, created_at, document) VALUES (?, ?, ?)",
                (batch_id, payload["created_at"], json.dumps(document, ensure_ascii=False)),
            )
            self.db.executemany("UPDATE taps SET batch_id = ? WHERE id = ?", [(batch_id, r[0]) for r in rows])
        return document

    def batch_acknowledged(self, *, batch_id: str, ack: Any, tenant_keys: dict[str, bytes]) -> dict[str, Any]:
        """Verify the tenant-signed acknowledgement of ``batch_id``, then forget the batch and its taps."""
        payload = verify_document(ack, keys=tenant_keys)
        if payload.get("batch_id") != batch_id:
            raise ValueError(
                said(
                    N_("acknowledgement is for batch %(id)r, not %(batch)r"),
                    id=payload.get("batch_id"),
                    batch=batch_id,
                )
            )
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("DELETE FROM taps WHERE batch_id = ?", (batch_id,))
            self.db.execute("DELETE FROM batches WHERE batch_id = ?", (batch_id,))
        return payload

    # --- batches refused for good ----------------------------------------------------------------------

    def batch_set_aside(
        self, *, batch_id: str, status: int, code: str, message: str, at: dt.datetime
    ) -> SetAsideBatch:
        """Move a refused batch out of the upload queue, with its refusal; its taps stay with it, so they
        go in no other batch, and the batches after it go on."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            row = self.db.execute(
                "SELECT created_at, document FROM batches WHERE batch_id = ?", (batch_id,)
            ).fetchone()
            if row is None:
                raise LookupError(said(N_("no batch %(id)r is waiting in the queue"), id=batch_id))
            taps = self.db.execute("SELECT count(*) FROM taps WHERE batch_id = ?", (batch_id,)).fetchone()[0]
            self.db.execute(
                "INSERT INTO batches_set_aside (batch_id, created_at, document, taps, status, code, message, "
                "set_aside_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (batch_id, row[0], row[1], taps, status, code, message, at.isoformat(timespec="seconds")),
            )
            self.db.execute("DELETE FROM batches WHERE batch_id = ?", (batch_id,))
        return self._set_aside_open(batch_id)

    def batches_set_aside(self, *, open_only: bool = False) -> list[SetAsideBatch]:
        """Set-aside batches, oldest first; with ``open_only`` those still waiting for a decision."""
        sql = f"SELECT {_SET_ASIDE_COLUMNS} FROM batches_set_aside"
        sql += " WHERE state = 'set_aside'" if open_only else ""
        return [SetAsideBatch(*row) for row in self.db.execute(sql + " ORDER BY id")]

    def _set_aside_open(self, batch_id: str) -> SetAsideBatch:
        row = self.db.execute(
            f"SELECT {_SET_ASIDE_COLUMNS} FROM batches_set_aside WHERE batch_id = ? AND state = 'set_aside'",
            (batch_id,),
        ).fetchone()
        if row is None:
            raise BatchNotSetAside(said(N_("no batch %(id)r is set aside"), id=batch_id))
        return SetAsideBatch(*row)

    def batch_requeue(self, *, batch_id: str, at: dt.datetime, rebatch: bool = False) -> SetAsideBatch:
        """Put a set-aside batch back in the queue: as it was (same id and bytes, first in line), or with
        ``rebatch`` its taps back among the waiting ones, to be signed into a new batch (for a refusal
        of the batch itself: 409 id reused, 413 too large, 401 a key rotated out)."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            aside = self._set_aside_open(batch_id)
            if rebatch:
                self.db.execute("UPDATE taps SET batch_id = NULL WHERE batch_id = ?", (batch_id,))
            else:
                self.db.execute(
                    "INSERT INTO batches (batch_id, created_at, document) "
                    "SELECT batch_id, created_at, document FROM batches_set_aside "
                    "WHERE batch_id = ? AND state = 'set_aside'",
                    (batch_id,),
                )
            self._decide(batch_id, "rebatched" if rebatch else "requeued", at=at, reason=None)
        return aside

    def batch_drop(self, *, batch_id: str, reason: str, at: dt.datetime) -> SetAsideBatch:
        """Give up a set-aside batch: its taps leave the queue for good; the signed batch document stays
        in ``batches_set_aside`` with the reason, as the record of what was not uploaded."""
        if not reason.strip():
            raise ValueError(said(N_("dropping a batch needs a reason")))
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            aside = self._set_aside_open(batch_id)
            self.db.execute("DELETE FROM taps WHERE batch_id = ?", (batch_id,))
            self._decide(batch_id, "dropped", at=at, reason=reason.strip())
        return aside

    def _decide(self, batch_id: str, state: str, *, at: dt.datetime, reason: str | None) -> None:
        self.db.execute(
            "UPDATE batches_set_aside SET state = ?, decided_at = ?, reason = ? "
            "WHERE batch_id = ? AND state = 'set_aside'",
            (state, at.isoformat(timespec="seconds"), reason, batch_id),
        )

    def queue_state(self) -> QueueState:
        batches = [
            QueuedBatch(*row)
            for row in self.db.execute(
                "SELECT b.batch_id, b.created_at, count(t.id) FROM batches b "
                "LEFT JOIN taps t ON t.batch_id = b.batch_id GROUP BY b.batch_id ORDER BY b.created_at, b.batch_id"
            )
        ]
        unbatched, unsettled = self.db.execute(
            "SELECT count(*) FILTER (WHERE state = 'complete' AND batch_id IS NULL), "
            "count(*) FILTER (WHERE state IN ('pending', 'torn')) FROM taps"
        ).fetchone()
        return QueueState(batches, unbatched, unsettled, self.batches_set_aside())
