"""Give memory back to the system between a pass and its upload.

A pass frees most of what its checks held (calls' peer connections, buffers,
parsed answers) but glibc keeps freed heap pages mapped, so the upload that
follows in the same process would add to the pass's peak instead of reusing
them. A full collection and `malloc_trim(0)` return them first.
"""

from __future__ import annotations

import ctypes
import gc
import sys


def release_memory() -> None:
    gc.collect()
    if not sys.platform.startswith("linux"):
        return
    try:
        trim = ctypes.CDLL(None).malloc_trim  # glibc; musl has none: nothing to do
    except (OSError, AttributeError):
        return
    trim(0)
