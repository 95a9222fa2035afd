"""SQLite: each API process's ingest writes run in one thread of their own,
ahead of the work that can wait.

Every API process waits for SQLite's write turn (collector/db/writelock.py),
and whoever holds it shares the cores with the other processes' parsing and
signature checks: over HTTP, after 160,000 records, a third to a half of the
turn's wall time was its holder off the CPU, and that turn is what bounds
ingest there (docs/scale.md). So the writes run in one thread per process at
the process's own priority, and each thread that hands one over lowers its
own priority once (nice +5: Linux's scheduler then gives a busy writer about
three times the share of a core of each such thread). A thread may lower its
own priority without privilege, not raise it back: hence a thread of its
own. Measured side by side over HTTP (two collectors, 8 paired rounds):
1.04x at an empty store (0.94-1.12), 1.07x after 160,000 records (every
round faster: 1.03-1.17). Where threads have no
priority of their own (not Linux), writes still go through the thread.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
NICE = 5


@dataclass
class _Job(Generic[T]):
    call: Callable[[], T]
    done: threading.Event = field(default_factory=threading.Event)
    result: T | None = None
    error: BaseException | None = None


class WriteThread:
    def __init__(self, nice: int = NICE) -> None:
        self.nice = nice
        self._jobs: queue.SimpleQueue[_Job[Any]] = queue.SimpleQueue()
        self._start = threading.Lock()
        self._thread: threading.Thread | None = None
        self._lowered = threading.local()

    def run(self, call: Callable[[], T]) -> T:
        """`call()` in the write thread; its result, or its exception raised here."""
        self._started()  # first: a new thread inherits its creator's priority
        self._lower_caller()
        job: _Job[T] = _Job(call)
        self._jobs.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[return-value]

    def _started(self) -> None:
        with self._start:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="ingest-writes",
                                                daemon=True)
                self._thread.start()

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                job.result = job.call()
            except BaseException as exc:  # handed back to the caller, whatever it is
                job.error = exc
            finally:
                job.done.set()

    def _lower_caller(self) -> None:
        if getattr(self._lowered, "done", False):
            return
        self._lowered.done = True
        try:
            thread = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, thread,
                           os.getpriority(os.PRIO_PROCESS, thread) + self.nice)
        except (AttributeError, OSError) as exc:  # no per-thread priorities here
            log.debug("ingest threads keep their priority: %s", exc)
