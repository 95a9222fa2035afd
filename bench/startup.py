"""Start-up cost of the command lines (`make bench`).

A volunteer's first contact with the probe is `--help` or a typo; a Pi's
timer runs `status` and `services` from scripts. Each must answer at once:
the target is <= 3x a bare `python -c pass` measured in the same run, for
`--help`, `services`, `status` and every user error (exit status 2). Each
figure is the median of RUNS runs of the installed console script, with its
ratio to the baseline. Nothing here touches the network: user errors are
caught before any traffic, `status` is given no collector.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
RUNS = int(os.environ.get("BENCH_STARTUP_RUNS", "15"))
TARGET_RATIO = 3.0


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """(median wall time in seconds, exit status of the last run)."""
    times, status = [], 0
    for _ in range(RUNS):
        start = time.perf_counter()
        status = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=env, check=False).returncode
        times.append(time.perf_counter() - start)
    return statistics.median(times), status


def cases(home: Path) -> list[tuple[str, list[str], int]]:
    probe, collector = str(BIN / "voipwatch-probe"), str(BIN / "voipwatch-collector")
    missing = str(home / "no-such-file.yaml")
    return [
        ("voipwatch-probe --help", [probe, "--help"], 0),
        ("voipwatch-probe run --help", [probe, "run", "--help"], 0),
        ("voipwatch-probe services", [probe, "services"], 0),
        ("voipwatch-probe status", [probe, "status"], 0),
        ("voipwatch-collector --help", [collector, "--help"], 0),
        ("user error: run --catalogue (missing file)", [probe, "run", "--catalogue", missing], 2),
        ("user error: run --resolver not-an-ip", [probe, "run", "--resolver", "not-an-ip"], 2),
        ("user error: run --link-type satellite", [probe, "run", "--link-type", "satellite"], 2),
        ("user error: run --output in a missing directory",
         [probe, "run", "--output", str(home / "no" / "such" / "dir" / "out.jsonl")], 2),
        ("user error: verify (missing file)", [probe, "verify", missing], 2),
        ("user error: upload (no collector)", [probe, "upload"], 2),
        ("user error: collector export --format xml",
         [collector, "export", "--format", "xml", "--out", "x"], 2),
        ("user error: collector export --out in a missing directory",
         [collector, "export", "--format", "jsonl", "--out",
          str(home / "no" / "such" / "dir" / "x.jsonl")], 2),
    ]


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="vwstart-") as workdir:
        home = Path(workdir)
        env = dict(os.environ, VOIPWATCH_HOME=str(home / "probe"),
                   VOIPWATCH_COLLECTOR_HOME=str(home / "collector"))
        baseline, _ = timed([sys.executable, "-c", "pass"], env)
        print(f"start-up, median of {RUNS} (target <= {TARGET_RATIO:g}x python -c pass)")
        print(f"  {'python -c pass':<50} {baseline * 1000:7.1f} ms  x 1.00")
        over = 0
        for name, argv, expected in cases(home):
            seconds, status = timed(argv, env)
            ratio = seconds / baseline
            verdict = "ok" if ratio <= TARGET_RATIO else "OVER"
            over += ratio > TARGET_RATIO
            note = "" if status == expected else f"  (exit {status}, expected {expected})"
            print(f"  {name:<50} {seconds * 1000:7.1f} ms  x{ratio:5.2f}  {verdict}{note}")
        print(f"  {over} of {len(cases(home))} over the target")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
