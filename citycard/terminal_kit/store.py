"""Store and forward (脱机存储转发): the terminal's durable SQLite (WAL) queue of taps and batches.

Every step a tap goes through is committed before the next happens: the PSAM counts the terminal
sequence number, the tap is written ``pending`` (with that number) before DEBIT, ``complete`` (with its
TAC) before the rider is told, and only then joined to a batch. A batch keeps its id and bytes across
retries and is deleted only after the back office's signed acknowledgement for exactly that batch
verifies. Killing the process at any point
loses nothing and duplicates nothing (the server's natural key absorbs a resend).
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
            "UNION ALL SELECT max(terminal_seq) FROM taps)"
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
            now = now or dt.datetime.now(dt.timezone(dt.timedelta(hours=8)))
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
            raise ValueError(f"acknowledgement is for batch {payload.get('batch_id')!r}, not {batch_id!r}")
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("DELETE FROM taps WHERE batch_id = ?", (batch_id,))
            self.db.execute("DELETE FROM batches WHERE batch_id = ?", (batch_id,))
        return payload
