"""Rejected submissions, counted by reason in memory and written with the next
write the collector makes anyway (or at most every `FLUSH_SECONDS`): a flood
of rejected uploads never takes the database's write lock per request."""

from __future__ import annotations

import threading
import time

FLUSH_SECONDS = 10.0


class Tally:
    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._flushed = time.monotonic()

    def add(self, counts: dict[str, int]) -> None:
        with self._lock:
            for reason, count in counts.items():
                self._counts[reason] = self._counts.get(reason, 0) + count

    def drain(self) -> dict[str, int]:
        """The counts so far, forgotten here (the caller writes them)."""
        with self._lock:
            counts, self._counts = self._counts, {}
            self._flushed = time.monotonic()
        return counts

    def restore(self, counts: dict[str, int]) -> None:
        """Counts a failed write could not store: kept for the next one."""
        self.add(counts)

    def due(self) -> bool:
        with self._lock:
            return bool(self._counts) and time.monotonic() - self._flushed >= FLUSH_SECONDS
