"""SQLite: ingest transactions from several processes take turns through a
file lock, handed over the moment it is released.

Without it, a writer that finds the database locked sleeps in SQLite's busy
handler (1, 2, 5, 10... up to 100 ms between attempts) and the write lock sits
idle between a commit and the next attempt; with the API's processes all
ingesting, that idle time was a bound on throughput. The kernel wakes the
next `flock` waiter at once. Each thread opens its own descriptor (a lock
belongs to an open file description), so threads of one process take turns
too. Other writers (registrations, counters) keep SQLite's busy handler.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

from sqlalchemy.engine import Engine


class _Descriptor:
    """A thread's descriptor of the lock file, closed with it (when the thread
    ends or its WriterTurns goes away), so no descriptor outlives its use."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def __del__(self) -> None:
        os.close(self.fd)


class WriterTurns:
    def __init__(self, engine: Engine) -> None:
        database = engine.url.database if engine.dialect.name == "sqlite" else None
        self.path = f"{database}-writer.lock" if database and database != ":memory:" else None
        self._local = threading.local()

    def turn(self) -> AbstractContextManager[None]:
        return self._flock() if self.path else nullcontext()

    @contextmanager
    def _flock(self) -> Iterator[None]:
        descriptor = getattr(self._local, "descriptor", None)
        if descriptor is None:
            assert self.path is not None
            descriptor = self._local.descriptor = _Descriptor(self.path)
        fd = descriptor.fd
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
