"""The local spool: every signed record is written here, fsync'd, before
anything else happens to it. A record leaves only when the collector has
answered `accepted` or `duplicate`; a `rejected` one is kept aside with its reason.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

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
"""


class Spool:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.db = sqlite3.connect(path, timeout=30, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")  # fsync on every commit
            self.db.executescript(_SCHEMA)
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

    def pending(self, limit: int) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT body FROM records WHERE state = 'pending' ORDER BY created_at, id LIMIT ?",
            (limit,),
        ).fetchall()
        return [json.loads(body) for (body,) in rows]

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

    def counts(self) -> dict[str, int]:
        rows = self.db.execute("SELECT state, COUNT(*) FROM records GROUP BY state").fetchall()
        counts = {"pending": 0, "rejected": 0}
        counts.update(dict(rows))
        return counts

    def rejected(self) -> list[tuple[str, str]]:
        return self.db.execute(
            "SELECT id, reason FROM records WHERE state = 'rejected' ORDER BY created_at"
        ).fetchall()
