"""Record ids: UUIDv7 (RFC 9562 section 5.7), the Unix time in milliseconds
followed by 74 random bits.

A record's id is the collector's idempotency key, held in a unique index. A
random id (UUIDv4) lands at a random place of that index: at millions of
records each insert touched a page that was not in the cache and wrote it
back whole, and a batch of 500 records dirtied hundreds of index pages. Ids
that grow with time are added at the index's end. The time they carry is the
record's own creation time, already in `started_at`; 74 random bits keep ids
made in the same millisecond apart (Python 3.11's uuid module has no uuid7).
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable

_VERSION, _VARIANT = 0x7, 0b10


def time_ordered_id(now_ns: int | None = None,
                    randbits: Callable[[int], int] = secrets.randbits) -> uuid.UUID:
    """A new UUIDv7; `now_ns` (Unix time in ns) defaults to the clock, `randbits`
    to the system's secure source (bench/generate.py passes a seeded one)."""
    millis = (time.time_ns() if now_ns is None else now_ns) // 1_000_000
    rand_a, rand_b = randbits(12), randbits(62)
    return uuid.UUID(int=(millis & (2**48 - 1)) << 80 | _VERSION << 76 | rand_a << 64
                     | _VARIANT << 62 | rand_b)
