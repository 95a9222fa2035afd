"""Progress of long work (minutes at millions of records) on stderr."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def progress_lines(prog: str, total: int | None, what: str, every: float = 5.0
                   ) -> Callable[[int], None]:
    """A callback told how many are done: a line on stderr every `every`
    seconds, with the rate and, given the `total`, the time left."""
    started = last = time.monotonic()

    def report(done: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last < every:
            return
        last = now
        rate = done / max(now - started, 1e-9)
        if total is None:
            sys.stderr.write(f"{prog}: {done:,} {what} ({rate:,.0f}/s)\n")
            return
        left = f", about {max(total - done, 0) / rate:,.0f} s left" if rate else ""
        sys.stderr.write(f"{prog}: {done:,} of {total:,} {what} ({rate:,.0f}/s{left})\n")

    return report
