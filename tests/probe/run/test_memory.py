"""The pass's malloc arena limit: glibc's own report (malloc_stats) counts the
arenas after threads have allocated, with and without the limit."""

from __future__ import annotations

import subprocess
import sys

import pytest

THREADS_ALLOCATING = """
import ctypes, sys, threading
from probe.run.memory import limit_arenas
if sys.argv[1] == "limit":
    assert limit_arenas(1)
def hold(n=64):
    kept = [bytearray(200_000) for _ in range(n)]  # above pymalloc: malloc's
    barrier.wait()  # all threads alive at once: each would need its own arena
    del kept
barrier = threading.Barrier(8)
threads = [threading.Thread(target=hold) for _ in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
ctypes.CDLL(None).malloc_stats()
"""


def arenas(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", THREADS_ALLOCATING, mode],
                          capture_output=True, text=True, check=True)
    return sum(line.startswith("Arena ") for line in done.stderr.splitlines())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_limit_arenas_bounds_the_arenas_threads_get() -> None:
    assert arenas("none") > 2
    assert arenas("limit") == 1
