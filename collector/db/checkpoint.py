"""SQLite: the write-ahead log copied back into the database by a background
thread of each `serve` process, every second.

By default SQLite checkpoints inside the commit that makes the WAL pass 1,000
pages, while that writer still holds the write lock: every few batches, one
ingest commit took the checkpoint's writes and fsyncs, and every other writer
waited for it (half the commit time at ingest). A PASSIVE checkpoint runs
beside writers and readers; several processes doing it at once is harmless
(one gets SQLITE_BUSY and tries again a second later). Under a steady stream
of writes a PASSIVE checkpoint never catches up with the end of the WAL, and
the WAL only restarts from its beginning once it has: past `WAL_LIMIT_BYTES`
a RESTART checkpoint takes its turn among the ingest writers and copies the
rest; the next commit then writes from the start of the file again. Not a
TRUNCATE: a WAL emptied to zero bytes grew again with every commit, and the
fsync of a file that grew also commits the file system's journal (ext4). Over
HTTP, after 160,000 records, commits took 33-44 µs of CPU a record with
TRUNCATE and 24-26 with RESTART, and ingest 4,500-5,100 records/s against
5,100-5,400 (3 rounds each). The file keeps its size, at most
`WAL_LIMIT_BYTES` once restarted (`journal_size_limit`, collector/db/engine.py).
When the last connection closes, SQLite checkpoints and removes the WAL as usual.
A RESTART waits at most RESTART_WAIT_MS for the lock and the readers, holding
the writers' turn; one that a reader kept from finishing (a long export on an
old snapshot) is tried again after a pause that doubles up to
RESTART_BACKOFF_MAX, and none is tried while a long writer holds the database
(collector/db/busy.py).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import nullcontext

from sqlalchemy.engine import Engine

from collector.db.busy import BusyMark, busy_timeout
from collector.db.engine import BUSY_TIMEOUT_MS, WAL_LIMIT_BYTES
from collector.db.writelock import WriterTurns

log = logging.getLogger(__name__)

INTERVAL = 1.0
RESTART_WAIT_MS = 1000  # how long a RESTART, holding the writers' turn, waits for the lock
RESTART_BACKOFF_MAX = 30.0  # seconds between RESTARTs that keep finding a reader in the way


class Checkpointer:
    def __init__(self, engine: Engine, interval: float = INTERVAL) -> None:
        self.engine = engine
        self.interval = interval
        self.turns = WriterTurns(engine)
        self.busy = BusyMark(engine.url.database)
        self._restart_after, self._backoff = 0.0, 1.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Checkpointer:
        if self.engine.dialect.name == "sqlite" and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="wal-checkpoint",
                                            daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.checkpoint()

    def checkpoint(self) -> None:
        database = self.engine.url.database
        try:
            size = os.path.getsize(f"{database}-wal")
        except (OSError, TypeError):
            size = 0
        # not while a long writer holds the database (collector/db/busy.py): each
        # process's RESTART would hold the writers' turn, waiting for it, in turn;
        # nor again at once after one that could not finish (a reader, e.g. an
        # export, kept an old snapshot): each attempt holds the turn a second
        restart = size > WAL_LIMIT_BYTES and not self.busy.fresh() and \
            time.monotonic() >= self._restart_after
        mode = "RESTART" if restart else "PASSIVE"
        try:
            # RESTART waits for the write lock: in turn with the ingest writers,
            # who hand it to each other at once (collector/db/writelock.py); for a
            # second at most (else next time), so the turn is not held long
            with self.turns.turn() if restart else nullcontext(), \
                    self.engine.connect() as conn, \
                    busy_timeout(conn, RESTART_WAIT_MS if restart else None, BUSY_TIMEOUT_MS):
                busy = conn.exec_driver_sql(f"PRAGMA wal_checkpoint({mode})").one()[0]
            if restart:
                self._backoff = min(self._backoff * 2, RESTART_BACKOFF_MAX) if busy else 1.0
                self._restart_after = time.monotonic() + (self._backoff if busy else 0.0)
        except Exception as exc:  # busy, or the file went away: next time
            log.debug("checkpoint skipped: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.checkpoint()
