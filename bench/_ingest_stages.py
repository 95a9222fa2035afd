"""Where ingest's time goes, per record (not run by `make bench`: a tool for
whoever optimises ingest). Runs `Ingestor.ingest` in this process on records
from bench/generate.py, on a fresh SQLite store (or `--db URL`), and prints
the microseconds per record spent in each step; the steps nest (`store` holds
insert, rollups, log and commit).

    python bench/_ingest_stages.py [--records 20000] [--days 1] [--db URL]
                                   [--preload 160000 [--preload-days 365]]

`--preload N` stores N records first, untimed: the steps at that store size.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy.engine.default as sa_default  # noqa: E402

import collector.translog as translog  # noqa: E402
from bench._ingestor import ingestor as in_process  # noqa: E402
from bench.generate import bodies  # noqa: E402
from collector import batch, gc_tuning, ingest, store  # noqa: E402
from collector.dashboard import rollup  # noqa: E402

SPENT: Counter[str] = Counter()


def timed(owner: Any, name: str, label: str) -> None:
    original: Callable[..., Any] = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            SPENT[label] += time.perf_counter() - start

    setattr(owner, name, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--days", type=float, default=1.0)
    parser.add_argument("--db", default=None)
    parser.add_argument("--preload", type=int, default=0,
                        help="records stored first, untimed (a store's size)")
    parser.add_argument("--preload-days", type=float, default=365.0)
    args = parser.parse_args()
    gc_tuning.tune()  # as `serve` does once started
    for owner, name, label in (
            (batch, "parse_batch", "parse (strict JSON)"),
            (ingest.Ingestor, "_check_shape", "schema and age"),
            (ingest.Ingestor, "_check_signature", "signature check"),
            (ingest, "_row", "row (hashes, leaf)"),
            (ingest.receipts, "receipt", "receipt"),
            (ingest.Ingestor, "_store", "store (write section)"),
            (store.MeasurementStore, "_insert_many", "  insert (SQLite)"),
            (store.MeasurementStore, "_insert_unnest", "  insert (PostgreSQL)"),
            (rollup, "apply_facts", "  rollups"),
            (rollup, "facts_of", "rollup facts (before the lock)"),
            (translog.TransLog, "append", "  log append"),
            (sa_default.DefaultDialect, "do_commit", "  commit")):
        timed(owner, name, label)
    with tempfile.TemporaryDirectory(prefix="vwc-stages-") as tmp, \
            in_process({"data_dir": Path(tmp), "db": args.db}) as (ingestor, origin):
        for block in range(0, args.preload, 100_000):
            for body in bodies(min(100_000, args.preload - block), 500, first=block,
                               days=args.preload_days):
                ingestor.ingest(batch.parse_batch(body, 1000), origin)
        SPENT.clear()
        data = list(bodies(args.records, 500, first=args.preload, days=args.days))
        start = time.perf_counter()
        for body in data:
            results = ingestor.ingest(batch.parse_batch(body, 1000), origin)
            assert all(r.status == "accepted" for r in results), results[0]
        total = time.perf_counter() - start
    print(f"ingest in one process: {args.records / total:,.0f} records/s, "
          f"{total / args.records * 1e6:.0f} µs per record")
    for label, seconds in SPENT.most_common():
        print(f"  {label:<24} {seconds / args.records * 1e6:7.1f} µs")


if __name__ == "__main__":
    main()
