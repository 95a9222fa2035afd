"""`voipwatch-probe verify-export` at scale (`make bench`): what an analyst
runs on a country's export before quoting it. N distinct signed records
(bench/generate.py) stored through the collector's own ingest, exported with
`voipwatch-collector export --format jsonl` (and its proof), then checked, on
exports of N/8 and N records.

Printed as ratios: the check's peak memory on N records to its peak on N/8
(constant memory: <= 1.25; it held every matching leaf as a dict, ~1.3 kB a
record, until the leaves went to a temporary SQLite file), and its records/s
to one core's raw Ed25519 verification rate in the same run (a signature per
record is the least a check costs). Also the export command's own rate, as
users run it: with its proof, every leaf of the log.

`BENCH_VERIFY_RECORDS` (default 100,000). Far below it the small export's
leaves do not fill the 8 MiB page cache of the temporary file, so the large
one's peak is higher by the cache it fills: 8,000 records read x1.32,
100,000 x1.02.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import _peak as peak  # noqa: E402
from bench._ingestor import ingestor  # noqa: E402
from bench.generate import bodies, generate  # noqa: E402
from bench.ingest import raw_verify_rate  # noqa: E402

RECORDS = int(os.environ.get("BENCH_VERIFY_RECORDS", "100000"))
MEMORY_TARGET = 1.25
BIN = Path(sys.executable).parent


def stored(work: Path, records: int) -> None:
    """`records` signed records (a year of dates) in a collector store at `work`,
    through `Ingestor.ingest` in this process (each checked and logged)."""
    from collector import batch

    with ingestor({"data_dir": work, "max_record_age_days": 0}) as (ingesting, origin):
        for body in bodies(records, 500, days=365):
            results = ingesting.ingest(batch.parse_batch(body, 1000), origin)
            if any(r.status != "accepted" for r in results):
                raise SystemExit(f"verify-export bench: a record was refused: {results[0]}")


def timed(argv: list[str], work: Path) -> peak.Run:
    with open(work / "stdout", "w+b") as out, open(work / "stderr", "w+b") as err:
        measured = peak.run(argv, stdout=out, stderr=err,
                            env={**os.environ, "VOIPWATCH_HOME": str(work / "home")})
        if measured.status != 0:
            err.seek(0)
            raise SystemExit(f"verify-export bench: {' '.join(argv)} failed: "
                             f"{err.read().decode()[-500:]}")
    return measured


def one_size(records: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="vw-verify-") as tmp:
        work = Path(tmp)
        stored(work, records)
        out = work / "export.jsonl"
        export = timed([str(BIN / "voipwatch-collector"), "export", "--format", "jsonl",
                        "--out", str(out), "--data-dir", str(work)], work)
        check = timed([str(BIN / "voipwatch-probe"), "verify-export", str(out)], work)
        said = (work / "stdout").read_text()
        if f"{records} records, all signatures valid" not in said:
            raise SystemExit(f"verify-export bench: unexpected result: {said[:300]}")
        return {"export_rate": records / export.seconds, "check_rate": records / check.seconds,
                "check_peak": check.peak_mib, "check_s": check.seconds}


def main() -> None:
    small, large = max(RECORDS // 8, 1000), RECORDS
    print(f"verify-export of JSONL exports of {small:,} and {large:,} signed records")
    started = time.perf_counter()
    raw = raw_verify_rate(list(generate(5000, workers=1)))
    figures = {size: one_size(size) for size in (small, large)}
    print(f"  one core's raw Ed25519 verification: {raw:,.0f} records/s")
    print(f"  {'records':>10}{'export /s':>11}{'check s':>9}{'check /s':>10}"
          f"{'x raw verify':>14}{'peak MiB':>10}")
    for size, f in figures.items():
        print(f"  {size:>10,}{f['export_rate']:>11,.0f}{f['check_s']:>9.1f}"
              f"{f['check_rate']:>10,.0f}{f['check_rate'] / raw:>13.2f}x"
              f"{f['check_peak']:>10.0f}")
    ratio = figures[large]["check_peak"] / figures[small]["check_peak"]
    verdict = "met" if ratio <= MEMORY_TARGET else "NOT met"
    print(f"  verify-export peak memory, {large:,} against {small:,} records: x{ratio:.2f} "
          f"(constant memory, <= x{MEMORY_TARGET}: {verdict}); "
          f"{time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
