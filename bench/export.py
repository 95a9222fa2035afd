"""Export benchmark (`make bench`): records per second that `voipwatch-collector
export` writes to Parquet, JSONL and CSV from a SQLite database, and the peak
memory of the export process at two database sizes (constant memory: the peak
must not grow with the number of records).

The database is filled the real way: signed records (bench/ingest.py's
realistic TLS records, about 1.4 kB each, across services and verdicts)
uploaded to `voipwatch-collector serve`. The baseline, measured in the same
run, is a raw sqlite3 read of the same rows and columns (the join the export
makes), with nothing written: the ratio says what the formatting costs.
Target: >= 200,000 records/s to Parquet, streaming: the rate past the
command's fixed start-up (interpreter, imports, opening the database), which
an export matching nothing measures in the same run; the whole command's
rate is printed beside it. `BENCH_EXPORT_RECORDS` (default
200,000) sets the larger size; the smaller one is a quarter of it.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from bench.ingest import realistic, upload  # noqa: E402
from probe.core.signing import ProbeKey  # noqa: E402

RECORDS = int(os.environ.get("BENCH_EXPORT_RECORDS", "200000"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
BATCH = 500
TARGET = 200_000
FORMATS = ("parquet", "jsonl", "csv")
VERDICTS = ("open", "open", "open", "blocked", "inconclusive")


def fill(url: str, start: int, count: int) -> None:
    """Upload `count` more signed records, two uploaders at once. Runs in a
    process of its own (`--fill`): a child forked from a large bench process
    would report the parent's memory as its own peak."""
    import httpx

    keys = [ProbeKey.generate() for _ in range(4)]
    with httpx.Client(base_url=url, timeout=30) as client:
        for key in keys:
            client.post("/api/v1/probes", json={"public_key": key.public_b64})
    records = []
    for i in range(start, start + count):
        key = keys[i % len(keys)]
        record = realistic(key, i)
        if (verdict := VERDICTS[i % len(VERDICTS)]) != "open":
            record = key.sign(dict(record, verdict=verdict,
                                   blocking="tcp.reset" if verdict == "blocked" else None))
        records.append(record)
    bodies = [orjson.dumps(records[i:i + BATCH]) for i in range(0, len(records), BATCH)]
    errors: list[str] = []
    threads = [threading.Thread(target=upload, args=(url, bodies[n::2], errors))
               for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise SystemExit(f"export bench: filling the database failed: {errors[0]}")


def raw_read(database: Path) -> float:
    """Records/s of a bare sqlite3 read of the exported columns."""
    best = 0.0
    for _ in range(RUNS):
        connection = sqlite3.connect(database)
        start = time.perf_counter()
        rows = 0
        cursor = connection.execute(
            "SELECT m.*, p.public_key, p.revoked_at FROM measurements m "
            "JOIN probes p ON p.key_id = m.key_id ORDER BY m.seq")
        while batch := cursor.fetchmany(5000):
            rows += len(batch)
        best = max(best, rows / (time.perf_counter() - start))
        connection.close()
    return best


def export(db_args: list[str], fmt: str, out: Path, *filters: str) -> tuple[float, float, int]:
    """Best wall time over RUNS exports, as (seconds, peak RSS MiB, bytes)."""
    command = [str(Path(sys.executable).parent / "voipwatch-collector"), "export", *db_args,
               "--format", fmt, "--out", str(out), *filters]
    best, peak = float("inf"), 0.0
    for _ in range(RUNS):
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            raise SystemExit(f"export bench: {' '.join(command)} failed: "
                             f"{process.stderr.read().decode()[-500:] if process.stderr else ''}")
        best, peak = min(best, elapsed), max(peak, usage.ru_maxrss / 1024)
    return best, peak, out.stat().st_size


def main() -> None:
    from tests.collector.harness import Collector

    if sys.argv[1:2] == ["--fill"]:
        fill(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    sizes = (RECORDS // 4, RECORDS)
    print(f"export: SQLite, {sizes[0]} then {sizes[1]} signed records, best of {RUNS}; "
          f"{os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="vwc-bench-export-") as tmp, \
            Collector(Path(tmp) / "data", None, ["--workers", "2"]) as collector:
        figures: dict[int, dict[str, tuple[float, float, int]]] = {}
        baseline: dict[int, float] = {}
        stored = 0
        for size in sizes:
            print(f"  filling the database to {size} records ...", flush=True)
            subprocess.run([sys.executable, __file__, "--fill", collector.url, str(stored),
                            str(size - stored)], check=True)
            stored = size
            baseline[size] = raw_read(Path(tmp) / "data" / "collector.sqlite3")
            figures[size] = {fmt: export(collector.db_args, fmt, Path(tmp) / f"out.{fmt}")
                             for fmt in FORMATS}
        small, large = sizes
        # the fixed cost of a run (interpreter, imports, opening the database):
        # an export that matches nothing
        startup = {fmt: export(collector.db_args, fmt, Path(tmp) / f"empty.{fmt}",
                               "--service", "no-such-service")[0] for fmt in FORMATS}
        print("  records/s: whole command / past its start-up (an empty export's time)")
        print(f"  {'':28}{'whole':>10}{'streaming':>11}{'x raw read':>12}{'start s':>9}"
              f"{'MB out':>8}{'peak RSS MiB':>14}{'at ' + str(small):>10}")
        print(f"  {'raw sqlite3 read (baseline)':28}{'':>10}{baseline[large]:11.0f}{1:12.2f}")
        for fmt in FORMATS:
            seconds, peak, size_bytes = figures[large][fmt]
            whole, streaming = large / seconds, large / max(seconds - startup[fmt], 1e-3)
            mark = ""
            if fmt == "parquet":
                mark = f"  (target >= {TARGET}: {'met' if streaming >= TARGET else 'MISSED'})"
            print(f"  {'export --format ' + fmt:28}{whole:10.0f}{streaming:11.0f}"
                  f"{streaming / baseline[large]:12.2f}{startup[fmt]:9.2f}{size_bytes / 1e6:8.1f}"
                  f"{peak:14.1f}{figures[small][fmt][1]:10.1f}{mark}")
        growth = max(figures[large][f][1] / figures[small][f][1] for f in FORMATS)
        print(f"  peak memory at {large} / at {small} records: at most x{growth:.2f} "
              f"({'constant' if growth < 1.15 else 'GROWS with the data'})")


if __name__ == "__main__":
    main()
