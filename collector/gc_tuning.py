"""The cyclic garbage collector, tuned for a server that parses batches.

A batch of 500 records allocates hundreds of thousands of containers that
reference counting frees on its own (records hold no cycles). With Python's
default threshold (700) each batch triggers hundreds of young collections and
several full ones, which walk every object the app loaded at start-up: 11 % of
ingest time, measured by bench/_ingest_stages.py. Start-up objects are moved
out of the collector's sight (`gc.freeze`) and young collections run every
50,000 allocations: cycles are still collected, a little later.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000


def tune() -> None:
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
