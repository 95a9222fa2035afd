"""An API process's write thread (collector/db/writethread.py): every call runs
in that one thread, one at a time, with its result or exception handed back;
the callers lower their own priority, the thread keeps the process's."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from collector.db.writethread import WriteThread


def _priority() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_calls_run_one_at_a_time_in_one_thread() -> None:
    writes = WriteThread()
    running, most, where = [0], [0], set()
    guard = threading.Lock()

    def call(n: int) -> int:
        with guard:
            running[0] += 1
            most[0] = max(most[0], running[0])
        where.add(threading.get_native_id())
        threading.Event().wait(0.002)
        with guard:
            running[0] -= 1
        return n * n

    def caller(n: int) -> tuple[int, int]:
        return writes.run(lambda: call(n)), threading.get_native_id()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(caller, range(64)))
    assert [r for r, _ in results] == [n * n for n in range(64)]
    assert most[0] == 1 and len(where) == 1
    assert where.isdisjoint({tid for _, tid in results})


def test_an_exception_reaches_the_caller_and_the_thread_goes_on() -> None:
    writes = WriteThread()

    def fail() -> None:
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        writes.run(fail)
    assert writes.run(lambda: 42) == 42


def test_callers_yield_to_the_write_thread() -> None:
    """Run in a thread of its own: lowering a priority cannot be undone."""
    writes = WriteThread(nice=5)
    seen: dict[str, int] = {}

    def caller() -> None:
        seen["caller before"] = _priority()
        seen["writer"] = writes.run(_priority)
        seen["caller after"] = _priority()
        writes.run(_priority)  # lowered once, not at every call
        seen["caller at last"] = _priority()

    thread = threading.Thread(target=caller)
    thread.start()
    thread.join(10)
    base = seen["caller before"]
    assert seen["writer"] == base
    assert seen["caller after"] == seen["caller at last"] == min(base + 5, 19)
