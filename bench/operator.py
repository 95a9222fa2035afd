"""Operator commands at scale (`make bench`): `voipwatch-collector report` of a
country over the whole period, and `redact` of one probe key, on two SQLite
stores of N/8 and N records (bench/_bigstore.py: 60 keys, two years of dates,
one country), run as an operator runs them.

Printed as ratios: each command's peak memory on the large store to its peak
on the small one (constant memory: <= 1.25, whatever a country's or a key's
share of the records), and the report's records/s to a raw read of the
columns it counts, with the database's own driver, in the same run (the
baseline: what is left is the report's own work). Each store's records are
entered in the transparency log first, untimed (the first command after
records stored with the log off does that).

`BENCH_OPERATOR_RECORDS` (default 1,000,000). Below ~100,000 the small
store is smaller than SQLite's page caches (32 MiB a connection), so the
large one's peak is higher by the caches it fills, not by what the command
holds: 16,000 records read x1.48 for the report, 1,000,000 x1.00.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import _bigstore as bigstore  # noqa: E402
from bench import _peak as peak  # noqa: E402
from bench.dashboard import Generator  # noqa: E402

RECORDS = int(os.environ.get("BENCH_OPERATOR_RECORDS", "1000000"))
PERIOD = ("--since", "2015-01-01", "--until", "2016-12-31")
MEMORY_TARGET = 1.25
RAW_SQL = ("SELECT seq, key_id, service, role, verdict, blocking, link_type, as_org, "
           "started_at, attribution, attribution_mismatch, late_seconds, record_sha256, "
           "log_index FROM measurements WHERE cc = 'MA' AND started_at >= '2015-01-01' "
           "AND started_at < '2017-01-01' ORDER BY seq")


def command(url: str, work: Path, *args: str) -> tuple[float, float, str]:
    """Run `voipwatch-collector ARGS` on the store: (seconds, its own peak RSS
    in MiB, its stdout)."""
    argv = [str(Path(sys.executable).parent / "voipwatch-collector"), args[0], "--db", url,
            "--data-dir", str(work), *args[1:]]
    with open(work / "stdout", "w+b") as out, open(work / "stderr", "w+b") as err:
        measured = peak.run(argv, stdout=out, stderr=err)
        if measured.status != 0:
            err.seek(0)
            raise SystemExit(f"operator bench: {' '.join(argv)} failed: "
                             f"{err.read().decode()[-500:]}")
        out.seek(0)
        return measured.seconds, measured.peak_mib, out.read().decode()


def raw_read(path: Path) -> float:
    """Records/s of a bare read of the report's columns with sqlite3 alone."""
    best, count = float("inf"), 0
    for _ in range(2):
        connection = sqlite3.connect(path)
        start = time.perf_counter()
        cursor = connection.execute(RAW_SQL)
        count = 0
        while rows := cursor.fetchmany(20_000):
            count += len(rows)
        best = min(best, time.perf_counter() - start)
        connection.close()
    return count / best


def one_store(records: int) -> dict[str, float]:
    from collector.db.engine import make_engine
    from collector.db.migrate import upgrade

    with tempfile.TemporaryDirectory(prefix="vw-operator-") as tmp:
        work = Path(tmp)
        path = work / "collector.sqlite3"
        url = f"sqlite:///{path}"
        generator = Generator()
        engine = make_engine(url)
        upgrade(engine)
        bigstore.fill(engine, generator, records, progress=False)
        engine.dispose()
        out = work / "report.html"
        # the log's catch-up of the generated rows, untimed: a report of one day
        command(url, work, "report", "--cc", "MA", "--since", "2015-01-01", "--until",
                "2015-01-01", "--out", str(out))
        seconds, report_peak, said = command(url, work, "report", "--cc", "MA", *PERIOD,
                                               "--out", str(out))
        reported = int(said.split(": ")[1].split()[0])
        raw = raw_read(path)
        with sqlite3.connect(path) as connection:  # the key with the most records
            key, share = connection.execute(
                "SELECT key_id, count(*) FROM measurements GROUP BY key_id "
                "ORDER BY 2 DESC LIMIT 1").fetchone()
        redact_seconds, redact_peak, _ = command(url, work, "redact", "--key-id", key)
        return {"records": reported, "report_s": seconds, "report_rate": reported / seconds,
                "raw_rate": raw, "report_peak": report_peak, "share": share,
                "redact_s": redact_seconds, "redact_peak": redact_peak}


def main() -> None:
    small, large = max(RECORDS // 8, 1000), RECORDS
    print(f"operator commands on SQLite stores of {small:,} and {large:,} records "
          f"(bench/_bigstore.py)")
    figures = {size: one_store(size) for size in (small, large)}
    print(f"  {'store':>12}{'report s':>10}{'records/s':>11}{'x raw read':>11}"
          f"{'peak MiB':>10}   {'redact':>9}{'s':>7}{'peak MiB':>10}")
    for size, f in figures.items():
        print(f"  {size:>12,}{f['report_s']:>10.1f}{f['report_rate']:>11,.0f}"
              f"{f['report_rate'] / f['raw_rate']:>10.2f}x{f['report_peak']:>10.0f}   "
              f"{f['share']:>9,}{f['redact_s']:>7.1f}{f['redact_peak']:>10.0f}")
    for name in ("report", "redact"):
        ratio = figures[large][f"{name}_peak"] / figures[small][f"{name}_peak"]
        verdict = "met" if ratio <= MEMORY_TARGET else "NOT met"
        print(f"  {name} peak memory, {large:,} against {small:,} records: x{ratio:.2f} "
              f"(constant memory, <= x{MEMORY_TARGET}: {verdict})")


if __name__ == "__main__":
    main()
