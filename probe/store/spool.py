"""The local spool: every signed record is written here, fsync'd, before
anything else happens to it. A record leaves only when the collector has
answered `accepted` or `duplicate` with a valid receipt for it, and the
receipt takes its place in the same transaction (`settle`; `voipwatch-probe
audit` checks them against the collector's log later). A `rejected` one is
kept aside with its reason; one refused for a reason that can pass (too old
for the collector's horizon, a key it does not know yet) waits, pending with
its reason and a time before which it is not sent again (`defer`).

A spool that cannot be read or written (its disk full, its file another user's,
a damaged page) is a `SpoolError`: one sentence naming it and the cause, exit
2, whatever it holds untouched. `run` tries a write before measuring
(`check_writable`); records a pass signed when the spool failed under it are
saved beside it (`save_unsaved`) and spooled by the next run or upload
(`take_back`), never twice.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Concatenate, NamedTuple, ParamSpec, TypeVar

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


# what a pass needs on the spool's disk, checked before it starts (`check_writable`):
# each record's commit appends its pages (the table's, its three indexes': about
# 5 of 4 KiB) to the WAL, which SQLite moves into the database every 1000 pages
# (its default), and the database grows by the record and its index entries
WAL_COMMIT = 5 * 4096
WAL_ROOM = 1005 * 4096
RECORD_ROOM = 16_384  # a large record (1-3 KB is usual) with its index entries
# the records a pass signed but could not spool are saved beside it, in files
# named so, and taken back by the next pass or upload (`take_back`)
UNSAVED = "unsaved-*.jsonl"


class SpoolError(UserError):
    """The spool could not be read or written: disk full, a file made read-only,
    a damaged database. One sentence naming the spool and the cause (exit 2,
    as when it cannot be opened); whatever it held before stays there."""

    def __init__(self, path: Path, doing: str, cause: str) -> None:
        super().__init__(f"cannot {doing} the spool {path}: {cause}")
        self.path, self.cause = path, cause


P = ParamSpec("P")
R = TypeVar("R")


def _guarded(doing: str) -> Callable[[Callable[Concatenate[Spool, P], R]],
                                     Callable[Concatenate[Spool, P], R]]:
    """SQLite's I/O and database errors (full, read-only, damaged, locked) become
    a SpoolError; its other errors (a misuse, a constraint) are bugs and stay."""
    def wrap(method: Callable[Concatenate[Spool, P], R]) -> Callable[Concatenate[Spool, P], R]:
        def guarded(self: Spool, /, *args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return method(self, *args, **kwargs)
            except OSError as exc:
                raise SpoolError(self.path, doing, exc.strerror or str(exc)) from exc
            except sqlite3.OperationalError as exc:  # full, read-only, I/O error, locked
                raise SpoolError(self.path, doing, str(exc)) from exc
            except sqlite3.DatabaseError as exc:
                if type(exc) is not sqlite3.DatabaseError:  # integrity, programming...
                    raise
                # malformed, not a database: nothing here can mend it
                raise SpoolError(self.path, doing, f"{exc} (`sqlite3 {self.path} .recover` "
                                 "may save its records; move it and its -wal and -shm files "
                                 "aside for a new one)") from exc
        functools.update_wrapper(guarded, method)
        return guarded
    return wrap


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

    @_guarded("write")
    def check_writable(self, records: int = 0) -> None:
        """Before a pass: refuse now, not after its first records, a spool that
        cannot take them. A record is written where the pass's will go and rolled
        back (a read-only file, a damaged page on their way, a lock held, no page
        left); the disk must have room for `records` more (`RECORD_ROOM` each, and
        the WAL)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:  # ids, creation times: after every other record, where new ones go; a
            # large record's size: it takes pages of its own
            self.db.execute("INSERT INTO records (id, body, created_at) VALUES (?, ?, ?)",
                            ("~write-test", " " * RECORD_ROOM, time.time()))
        finally:
            if self.db.in_transaction:  # SQLite ends it itself on some errors
                self.db.execute("ROLLBACK")
        if records:
            need = min(records * WAL_COMMIT, WAL_ROOM) + records * RECORD_ROOM
            free = shutil.disk_usage(self.path.parent).free
            if free < need:
                checks = f"{records} check" + ("s" if records > 1 else "")
                raise SpoolError(self.path, "write", f"only {_size(free)} free on its disk, "
                                 f"a pass of {checks} needs about {_size(need)} (free some, "
                                 "or measure fewer services: --services)")

    def save_unsaved(self, records: list[dict[str, Any]]) -> Path | None:
        """Records signed but not spooled (the spool failed): save them as JSON
        lines beside the spool, else in the temporary directory, for `take_back`.
        The file written, or None when neither could be."""
        import contextlib
        import tempfile

        data = "".join(_body(r) + "\n" for r in records).encode()
        name = UNSAVED.replace("*", time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
                               + f"-{os.getpid()}")
        for directory in (self.path.parent, Path(tempfile.gettempdir())):
            target = directory / name
            created = False
            try:
                with open(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600),
                          "wb") as file:
                    created = True
                    file.write(data)
                    file.flush()
                    os.fsync(file.fileno())
                return target
            except OSError:
                if created:  # half a file would be taken back as a bad one
                    with contextlib.suppress(OSError):
                        target.unlink()
        return None

    @_guarded("write")
    def take_back(self) -> int:
        """Spool the records `save_unsaved` kept beside the spool, and delete their
        files: how many were spooled (those already spooled, or already settled with
        a receipt, are not again). A file with a line that is not a record is left
        where it is."""
        import contextlib

        taken = 0
        for path in sorted(self.path.parent.glob(UNSAVED)):
            try:
                records = [json.loads(line) for line in path.read_text("utf-8").splitlines()
                           if line.strip()]
            except (OSError, ValueError):
                continue
            if not all(isinstance(r, dict) and isinstance(r.get("id"), str) for r in records):
                continue
            with self.db:
                self.db.execute("BEGIN IMMEDIATE")
                for record in records:
                    if self.db.execute("SELECT 1 FROM receipts WHERE record_id = ?",
                                       (record["id"],)).fetchone() is None:
                        taken += self._insert(record)
            with contextlib.suppress(OSError):  # taken again next time: never twice
                path.unlink()
        return taken

    def _insert(self, record: dict[str, Any]) -> int:
        return self.db.execute(
            "INSERT OR IGNORE INTO records (id, body, created_at) VALUES (?, ?, ?)",
            (record["id"], _body(record), time.time()),
        ).rowcount

    @_guarded("write")
    def add(self, record: dict[str, Any]) -> None:
        """Store a signed record durably; adding the same id twice is a no-op."""
        self._insert(record)

    @_guarded("read")
    def pending(self, limit: int, now: float | None = None) -> list[dict[str, Any]]:
        """Pending records due to be sent (not waiting until later), oldest first."""
        return [json.loads(spooled.body) for spooled in self.pending_bodies(limit, now)]

    @_guarded("read")
    def pending_bodies(self, limit: int, now: float | None = None) -> list[Spooled]:
        """The same records as stored (compact JSON, UTF-8), unparsed: a batch of
        them weighs its bytes, not the several times more of parsed objects."""
        rows = self.db.execute(
            "SELECT id, CAST(body AS BLOB) FROM records WHERE state = 'pending' AND "
            "(not_before IS NULL OR not_before <= ?) ORDER BY created_at, id LIMIT ?",
            (time.time() if now is None else now, limit),
        ).fetchall()
        return [Spooled(record_id, body) for record_id, body in rows]

    @_guarded("read")
    def due(self, now: float | None = None) -> int:
        """How many pending records are due to be sent now (counted, not loaded)."""
        row = self.db.execute(
            "SELECT COUNT(*) FROM records WHERE state = 'pending' AND "
            "(not_before IS NULL OR not_before <= ?)",
            (time.time() if now is None else now,)).fetchone()
        return int(row[0])

    @_guarded("write")
    def defer(self, record_id: str, reason: str, delay: float) -> None:
        """Keep a refused record pending, with why, not sent again for `delay` s."""
        self.db.execute("UPDATE records SET reason = ?, not_before = ? WHERE id = ? AND "
                        "state = 'pending'", (reason, time.time() + delay, record_id))

    @_guarded("write")
    def release(self, reason: str | None = None) -> int:
        """Make waiting records due now (all, or those waiting for `reason`)."""
        query = "UPDATE records SET not_before = NULL WHERE state = 'pending' AND " \
                "not_before IS NOT NULL"
        cursor = self.db.execute(query + (" AND reason = ?" if reason else ""),
                                 (reason,) if reason else ())
        return cursor.rowcount

    @_guarded("read")
    def waiting(self) -> list[tuple[str, str, float, int]]:
        """(id, reason, not_before, attempts) of the records that wait, soonest first."""
        return self.db.execute(
            "SELECT id, reason, not_before, attempts FROM records WHERE state = 'pending' "
            "AND reason IS NOT NULL ORDER BY not_before, created_at").fetchall()

    @_guarded("write")
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

    @_guarded("read")
    def receipts(self, collector: str, unaudited_only: bool = True
                 ) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
        """(id, receipt, claims) of the records `collector` gave receipts for."""
        query = "SELECT record_id, receipt, claims FROM receipts WHERE collector = ?"
        if unaudited_only:
            query += " AND audited_size IS NULL"
        rows = self.db.execute(query + " ORDER BY log_index", (collector,)).fetchall()
        return [(rid, json.loads(r), json.loads(c)) for rid, r, c in rows]

    @_guarded("write")
    def audited(self, ids: list[str], tree_size: int) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("UPDATE receipts SET audited_size = ? WHERE record_id = ?",
                                [(tree_size, i) for i in ids])

    @_guarded("read")
    def receipt_counts(self) -> dict[str, int]:
        row = self.db.execute("SELECT COUNT(*), COUNT(audited_size) FROM receipts").fetchone()
        return {"receipts": int(row[0]), "audited": int(row[1])}

    @_guarded("write")
    def remove(self, ids: list[str]) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("DELETE FROM records WHERE id = ?", [(i,) for i in ids])

    @_guarded("write")
    def reject(self, record_id: str, reason: str) -> None:
        self.db.execute("UPDATE records SET state = 'rejected', reason = ? WHERE id = ?",
                        (reason, record_id))

    @_guarded("write")
    def count_attempt(self, ids: list[str]) -> None:
        self.db.executemany("UPDATE records SET attempts = attempts + 1 WHERE id = ?",
                            [(i,) for i in ids])

    @_guarded("read")
    def attempts(self, record_id: str) -> int:
        row = self.db.execute("SELECT attempts FROM records WHERE id = ?",
                              (record_id,)).fetchone()
        return int(row[0]) if row else 1

    @_guarded("read")
    def counts(self) -> dict[str, int]:
        rows = self.db.execute("SELECT state, COUNT(*) FROM records GROUP BY state").fetchall()
        counts = {"pending": 0, "rejected": 0}
        counts.update(dict(rows))
        return counts

    @_guarded("read")
    def rejected(self) -> list[tuple[str, str]]:
        return self.db.execute(
            "SELECT id, reason FROM records WHERE state = 'rejected' ORDER BY created_at"
        ).fetchall()


def _body(record: dict[str, Any]) -> str:
    """A record as the spool keeps it, and sends it: compact JSON."""
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


def _size(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 1e6 else f"{count / 1e3:.0f} kB"


def _marks(values: frozenset[str]) -> str:
    return ", ".join("?" for _ in values)
