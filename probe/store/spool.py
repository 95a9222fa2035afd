"""The local spool: every signed record is written here, fsync'd, before
anything else happens to it. A record leaves only when the collector has
answered `accepted` or `duplicate` with a valid receipt for it, and the
receipt takes its place in the same transaction (`settle`; `voipwatch-probe
audit` checks them against the collector's log later). A `rejected` one is
kept aside with its reason; one refused for a reason that can pass (too old
for the collector's horizon, a key it does not know yet) waits, pending with
its reason and a time before which it is not sent again (`defer`).
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any, NamedTuple

from probe.core.errors import UserError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    created_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'rejected')),
    reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS records_state ON records(state, created_at);
CREATE TABLE IF NOT EXISTS receipts (
    record_id TEXT PRIMARY KEY,
    collector TEXT NOT NULL,
    record_sha256 TEXT NOT NULL,
    log_index INTEGER,
    receipt TEXT NOT NULL,
    claims TEXT NOT NULL,
    audited_size INTEGER
);
CREATE INDEX IF NOT EXISTS receipts_audit ON receipts(collector, audited_size, log_index);
"""
# SQLite's page cache for the spool (its default is 2 MiB): a batch's records are
# read once and sent; the kernel's page cache keeps what is read again
CACHE_KIB = 512
# reasons a refusal can pass: the record waits and is sent again later
RETRYABLE = frozenset({"too_old", "unknown_key", "from_future"})


class Spooled(NamedTuple):
    """A pending record as the spool holds it: its id and its compact JSON
    (UTF-8, as sent)."""

    id: str
    body: bytes


class Spool:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.db = sqlite3.connect(path, timeout=30, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")  # fsync on every commit
            self.db.executescript(_SCHEMA)
            columns = {row[1] for row in self.db.execute("PRAGMA table_info(records)")}
            if "not_before" not in columns:  # a spool from before waiting records
                self.db.execute("ALTER TABLE records ADD COLUMN not_before REAL")
                self.db.execute(
                    "UPDATE records SET state = 'pending', not_before = 0 "
                    f"WHERE state = 'rejected' AND reason IN ({_marks(RETRYABLE)})",
                    sorted(RETRYABLE))
            # what is due is counted from this index alone, never by reading every
            # record's body into SQLite's page cache (a backlog's worth of MB)
            self.db.execute("CREATE INDEX IF NOT EXISTS records_due ON records(state, not_before)")
            self.db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        except (OSError, sqlite3.Error) as exc:
            raise UserError(f"cannot open the spool {path}: {exc}") from exc

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, record: dict[str, Any]) -> None:
        """Store a signed record durably; adding the same id twice is a no-op."""
        self.db.execute(
            "INSERT OR IGNORE INTO records (id, body, created_at) VALUES (?, ?, ?)",
            (record["id"], json.dumps(record, separators=(",", ":"), ensure_ascii=False),
             time.time()),
        )

    def pending(self, limit: int, now: float | None = None) -> list[dict[str, Any]]:
        """Pending records due to be sent (not waiting until later), oldest first."""
        return [json.loads(spooled.body) for spooled in self.pending_bodies(limit, now)]

    def pending_bodies(self, limit: int, now: float | None = None) -> list[Spooled]:
        """The same records as stored (compact JSON, UTF-8), unparsed: a batch of
        them weighs its bytes, not the several times more of parsed objects."""
        rows = self.db.execute(
            "SELECT id, CAST(body AS BLOB) FROM records WHERE state = 'pending' AND "
            "(not_before IS NULL OR not_before <= ?) ORDER BY created_at, id LIMIT ?",
            (time.time() if now is None else now, limit),
        ).fetchall()
        return [Spooled(record_id, body) for record_id, body in rows]

    def due(self, now: float | None = None) -> int:
        """How many pending records are due to be sent now (counted, not loaded)."""
        row = self.db.execute(
            "SELECT COUNT(*) FROM records WHERE state = 'pending' AND "
            "(not_before IS NULL OR not_before <= ?)",
            (time.time() if now is None else now,)).fetchone()
        return int(row[0])

    def defer(self, record_id: str, reason: str, delay: float) -> None:
        """Keep a refused record pending, with why, not sent again for `delay` s."""
        self.db.execute("UPDATE records SET reason = ?, not_before = ? WHERE id = ? AND "
                        "state = 'pending'", (reason, time.time() + delay, record_id))

    def release(self, reason: str | None = None) -> int:
        """Make waiting records due now (all, or those waiting for `reason`)."""
        query = "UPDATE records SET not_before = NULL WHERE state = 'pending' AND " \
                "not_before IS NOT NULL"
        cursor = self.db.execute(query + (" AND reason = ?" if reason else ""),
                                 (reason,) if reason else ())
        return cursor.rowcount

    def waiting(self) -> list[tuple[str, str, float, int]]:
        """(id, reason, not_before, attempts) of the records that wait, soonest first."""
        return self.db.execute(
            "SELECT id, reason, not_before, attempts FROM records WHERE state = 'pending' "
            "AND reason IS NOT NULL ORDER BY not_before, created_at").fetchall()

    def settle(self, collector: str, receipts: list[tuple[str, dict[str, Any],
                                                          dict[str, Any]]]) -> None:
        """Records the collector stored: each (id, receipt, claims) takes the
        record's place, in one transaction (`claims`: what an audit compares with
        the record's log leaf)."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany(
                "INSERT OR REPLACE INTO receipts (record_id, collector, record_sha256, "
                "log_index, receipt, claims) VALUES (?, ?, ?, ?, ?, ?)",
                [(record_id, collector, receipt["record_sha256"], receipt.get("log_index"),
                  json.dumps(receipt, separators=(",", ":")),
                  json.dumps(claims, separators=(",", ":"))) for record_id, receipt, claims
                 in receipts])
            self.db.executemany("DELETE FROM records WHERE id = ?",
                                [(record_id,) for record_id, _, _ in receipts])

    def receipts(self, collector: str, unaudited_only: bool = True
                 ) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
        """(id, receipt, claims) of the records `collector` gave receipts for."""
        query = "SELECT record_id, receipt, claims FROM receipts WHERE collector = ?"
        if unaudited_only:
            query += " AND audited_size IS NULL"
        rows = self.db.execute(query + " ORDER BY log_index", (collector,)).fetchall()
        return [(rid, json.loads(r), json.loads(c)) for rid, r, c in rows]

    def audited(self, ids: list[str], tree_size: int) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("UPDATE receipts SET audited_size = ? WHERE record_id = ?",
                                [(tree_size, i) for i in ids])

    def receipt_counts(self) -> dict[str, int]:
        row = self.db.execute("SELECT COUNT(*), COUNT(audited_size) FROM receipts").fetchone()
        return {"receipts": int(row[0]), "audited": int(row[1])}

    def remove(self, ids: list[str]) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("DELETE FROM records WHERE id = ?", [(i,) for i in ids])

    def reject(self, record_id: str, reason: str) -> None:
        self.db.execute("UPDATE records SET state = 'rejected', reason = ? WHERE id = ?",
                        (reason, record_id))

    def count_attempt(self, ids: list[str]) -> None:
        self.db.executemany("UPDATE records SET attempts = attempts + 1 WHERE id = ?",
                            [(i,) for i in ids])

    def attempts(self, record_id: str) -> int:
        row = self.db.execute("SELECT attempts FROM records WHERE id = ?",
                              (record_id,)).fetchone()
        return int(row[0]) if row else 1

    def counts(self) -> dict[str, int]:
        rows = self.db.execute("SELECT state, COUNT(*) FROM records GROUP BY state").fetchall()
        counts = {"pending": 0, "rejected": 0}
        counts.update(dict(rows))
        return counts

    def rejected(self) -> list[tuple[str, str]]:
        return self.db.execute(
            "SELECT id, reason FROM records WHERE state = 'rejected' ORDER BY created_at"
        ).fetchall()


def _marks(values: frozenset[str]) -> str:
    return ", ".join("?" for _ in values)
