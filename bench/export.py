"""Export benchmark (`make bench`): records per second that `voipwatch-collector
export` writes to Parquet (one file, and the dataset partitioned by day),
JSONL and CSV, and the leaves/s of its proof, on SQLite and PostgreSQL, and
the export process's peak memory for two numbers of records exported from
the same store (constant memory: the peak must not grow with the records).

The store is filled by bench/_bigstore.py (generated rows, about 0.8 kB of
signed record each, written straight into the tables; bench/ingest.py
measures uploads). The two sizes are the records of the last eighth of the
stored period (`--since`) and all of them; the last quarter or half where an
eighth holds fewer than three Parquet row groups (below about 800,000 records
stored: a smaller export never fills the writer's row group, so its lower peak
would be no sign of growth). The
baseline, measured in the same run, is a raw read of the same rows and
columns (the join the export makes) with the database's own driver and
nothing written: the ratio says what the formatting costs. Target: >= 200,000
records/s to Parquet, streaming: the rate past the command's fixed start-up
(interpreter, imports, opening the database), which an export matching
nothing measures in the same run; the whole command's rate is printed beside
it.

`BENCH_EXPORT_RECORDS` (default 200,000), `BENCH_EXPORT_BACKENDS` (default
`sqlite,postgresql`), `BENCH_EXPORT_FORMATS` (default
`parquet,parquet-day,jsonl,csv,proof,parquet+proof`; `proof` is the proof the
command writes by default, every leaf of the log, in leaves/s; `F+proof` the
command as it runs by default, format F with its proof, written at once), or
`BENCH_DB_URL` to reuse a store filled once with
`python bench/_bigstore.py URL 10000000`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import _bigstore as bigstore  # noqa: E402
from bench import _peak as peak_of  # noqa: E402
from bench.dashboard import Generator  # noqa: E402
from collector.export import ROW_GROUP_ROWS  # noqa: E402

RECORDS = int(os.environ.get("BENCH_EXPORT_RECORDS", "200000"))
BACKENDS = os.environ.get("BENCH_EXPORT_BACKENDS", "sqlite,postgresql").split(",")
FORMATS = os.environ.get("BENCH_EXPORT_FORMATS",
                         "parquet,parquet-day,jsonl,csv,proof,parquet+proof").split(",")
DB_URL = os.environ.get("BENCH_DB_URL")
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
TARGET = 200_000
RAW_SQL = ("SELECT m.*, p.public_key, p.revoked_at FROM measurements m "
           "JOIN probes p ON p.key_id = m.key_id ORDER BY m.seq")


def raw_read(url: str) -> float:
    """Records/s of a bare read of the exported rows with the driver alone
    (PostgreSQL: the bytes of a binary COPY of them, which its native export
    reads too)."""
    best = 0.0
    for _ in range(RUNS):
        if url.startswith("postgresql"):  # the rows as COPY sends them, not parsed
            import psycopg

            with psycopg.connect(url.replace("+psycopg", "")) as connection:
                rows = connection.execute("SELECT count(*) FROM measurements").fetchone()[0]
                start = time.perf_counter()
                with connection.cursor().copy(f"COPY ({RAW_SQL}) TO STDOUT (FORMAT binary)"
                                              ) as copy:
                    for _ in copy:
                        pass
                best = max(best, rows / (time.perf_counter() - start))
            continue
        else:
            import sqlite3

            connection = sqlite3.connect(url.removeprefix("sqlite:///"))  # type: ignore[assignment]
            cursor = connection.cursor()  # type: ignore[assignment]
        start = time.perf_counter()
        rows = 0
        cursor.execute(RAW_SQL)
        while batch := cursor.fetchmany(5000):
            rows += len(batch)
        best = max(best, rows / (time.perf_counter() - start))
        connection.close()
    return best


def export(url: str, fmt: str, out: Path, *filters: str) -> tuple[float, float, int]:
    """Best wall time over RUNS exports, as (seconds, peak RSS MiB, bytes).
    `proof`: the proof alone (every leaf of the log), beside a JSONL export
    of nothing; its bytes are the proof's. `F+proof`: format F and its proof."""
    partition = ["--partition", "day"] if fmt == "parquet-day" else []
    if fmt == "proof":
        options = ["--format", "jsonl", "--service", "no-such-service"]
    elif fmt.endswith("+proof"):
        options = ["--format", fmt.removesuffix("+proof")]
    else:
        options = ["--no-proof", "--format", fmt.removesuffix("-day"), *partition]
    command = [str(Path(sys.executable).parent / "voipwatch-collector"), "export", "--db", url,
               "--data-dir", str(out.parent), *options, "--out", str(out), *filters]
    best, peak = float("inf"), 0.0
    for _ in range(RUNS):
        shutil.rmtree(out, ignore_errors=True) if out.is_dir() else out.unlink(missing_ok=True)
        with tempfile.TemporaryFile() as err:
            measured = peak_of.run(command, stdout=subprocess.DEVNULL, stderr=err)
            if measured.status != 0:
                err.seek(0)
                raise SystemExit(f"export bench: {' '.join(command)} failed: "
                                 f"{err.read().decode()[-500:]}")
        best, peak = min(best, measured.seconds), max(peak, measured.peak_mib)
    if fmt == "proof":
        out = out.with_name(out.name + ".proof")
    size = (sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) if out.is_dir()
            else out.stat().st_size)
    return best, peak, size


# the smaller export holds at least this many records where it can (see above)
SMALL_AT_LEAST = 3 * ROW_GROUP_ROWS
_SHARES = {8: "eighth", 4: "quarter", 2: "half"}  # tried in this order


def recent_share(url: str) -> tuple[tuple[str, ...], int, int, str]:
    """The smaller size's filter, the last eighth of the stored period
    (`--since`; a quarter or a half where an eighth holds fewer than
    SMALL_AT_LEAST records), the numbers of records it and the whole store
    hold, and the share's name. A span of time and not one service: the
    dataset holds each open day's rows in memory (collector/export_dataset.py),
    so a subset with fewer records a day would measure the density of the
    days, not the number of records."""
    import sqlalchemy as sa

    from collector.db.engine import make_engine
    from collector.db.schema import measurements

    m = measurements.c
    engine = make_engine(url)
    with engine.connect() as conn:
        first, last = conn.execute(sa.select(sa.func.min(m.started_at),
                                             sa.func.max(m.started_at))).one()
        total = int(conn.execute(sa.select(sa.func.count()).select_from(measurements))
                    .scalar_one())
        for parts in _SHARES:
            since = last - (last - first) / parts
            subset = int(conn.execute(sa.select(sa.func.count()).where(m.started_at >= since))
                         .scalar_one())
            if subset >= SMALL_AT_LEAST:
                break
    engine.dispose()
    text = since.strftime("%Y-%m-%dT%H:%M:%SZ")
    return ("--since", text), subset, total, _SHARES[parts]


def bench(backend: str, url: str, work: Path) -> None:
    subset_filter, subset, total, share = recent_share(url)
    print(f"  {backend}: {total:,} records stored; exports of {subset:,} (the last {share} "
          f"of the period, {' '.join(subset_filter)}) and {total:,}, best of {RUNS}", flush=True)
    baseline = raw_read(url)
    if "proof" in FORMATS:  # the store's records entered in the log first, as at start
        export(url, "proof", work / "warm.proof")
    figures = {fmt: (export(url, fmt, work / f"small.{fmt}", *subset_filter),
                     export(url, fmt, work / f"all.{fmt}")) for fmt in FORMATS}
    # the fixed cost of a run (interpreter, imports, opening the database)
    startup = {fmt: export(url, "jsonl" if fmt == "proof" else fmt.removesuffix("+proof"),
                           work / f"empty.{fmt}",
                           "--service", "no-such-service")[0] for fmt in FORMATS}
    print(f"    {'records/s':28}{'whole':>10}{'streaming':>11}{'x raw read':>12}{'start s':>9}"
          f"{'MB out':>8}{'peak RSS MiB':>14}{'at ' + format(subset, ','):>14}")
    print(f"    {'raw read (baseline)':28}{'':>10}{baseline:11.0f}{1:12.2f}")
    growth = 0.0
    for fmt in FORMATS:
        (_, small_peak, _), (seconds, peak, size_bytes) = figures[fmt]
        whole, streaming = total / seconds, total / max(seconds - startup[fmt], 1e-3)
        growth = max(growth, peak / small_peak)
        mark = ""
        if fmt.startswith("parquet"):
            mark = f"  (target >= {TARGET:,}: {'met' if streaming >= TARGET else 'MISSED'})"
        print(f"    {'export ' + fmt:28}{whole:10.0f}{streaming:11.0f}"
              f"{streaming / baseline:12.2f}{startup[fmt]:9.2f}{size_bytes / 1e6:8.1f}"
              f"{peak:14.1f}{small_peak:14.1f}{mark}")
    print(f"    peak memory at {total:,} / at {subset:,} records: at most x{growth:.2f} "
          f"({'constant' if growth < 1.15 else 'GROWS with the data'})")


def fill_and_bench(backend: str, url: str, work: Path, fill: bool) -> None:
    from collector.db.engine import make_engine
    from collector.db.migrate import upgrade

    engine = make_engine(url)
    upgrade(engine)
    if fill:
        print(f"  {backend}: filling {RECORDS:,} records ...", flush=True)
        bigstore.fill(engine, Generator(), RECORDS, progress=False)
    engine.dispose()
    bench(backend, url, work)


def main() -> None:
    print(f"export: {', '.join(FORMATS)}; {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}")
    bigstore.each_store(DB_URL, BACKENDS, "vwc-bench-export-", fill_and_bench)


if __name__ == "__main__":
    main()
