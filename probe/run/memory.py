"""Keep a pass's memory small (a Raspberry Pi's share, the 100 MB target).

- `limit_arenas`: glibc gives each thread that allocates an arena of its own
  (up to 8 per core), and an arena's freed pages stay mapped. A pass's
  threads (link detection, name lookups, one audio decoder per call) would
  each keep one; two arenas bound that to what two threads hold.
- `release_memory`: a pass frees most of what its checks held (calls' peer
  connections, buffers, parsed answers) but glibc keeps freed heap pages
  mapped, so the upload that follows in the same process would add to the
  pass's peak instead of reusing them. A full collection and `malloc_trim(0)`
  return them first.
"""

from __future__ import annotations

import ctypes
import gc
import sys
from typing import Any

M_ARENA_MAX = -8  # glibc's <malloc.h>
PASS_ARENAS = 2


def _libc() -> Any | None:
    """glibc's entry points, or None elsewhere (musl and macOS have neither
    mallopt's arena limit nor malloc_trim: nothing to do there)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt, libc.malloc_trim  # noqa: B018 - both or neither
    except (OSError, AttributeError):
        return None
    return libc


def limit_arenas(count: int = PASS_ARENAS) -> bool:
    """At most `count` malloc arenas from now on (call before threads start);
    whether the C library took the limit."""
    libc = _libc()
    return bool(libc and libc.mallopt(M_ARENA_MAX, count) == 1)


def release_memory() -> None:
    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
