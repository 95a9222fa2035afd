"""Fuzz every network parser (issue 13): STUN, TURN, SIP, DNS answers, SDP and
the ingest body, 1,000,000 inputs each (BENCH_FUZZ_RUNS), with atheris
(coverage-guided, libFuzzer) seeded with the golden vectors; the mutation
fuzzer of tests/support/fuzzer.py where atheris is not installed. Prints, per
parser, inputs, time, inputs/s and escaping exceptions (must be 0).

    python bench/fuzz.py [TARGET ...]
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RUNS = int(os.environ.get("BENCH_FUZZ_RUNS", "1000000"))
PARALLEL = int(os.environ.get("BENCH_FUZZ_PARALLEL", "2"))


def worker(name: str, runs: int, corpus: Path) -> None:
    """In a process of its own: atheris on one target (it exits when done)."""
    import atheris

    from tests.support.fuzz_targets import TARGETS, seeds

    target = TARGETS[name]
    for index, seed in enumerate(seeds(name)):
        (corpus / f"seed-{index}").write_bytes(seed)
        target(seed)  # imports everything the target reaches, before instrumenting
    instrument_ours(atheris)
    atheris.Setup([sys.argv[0], f"-runs={runs}", "-max_len=4096", "-rss_limit_mb=1024",
                   "-print_final_stats=1", str(corpus)], target)
    atheris.Fuzz()


# the modules whose branches guide the fuzzer: ours; instrumenting everything
# (pydantic, aioice, dnspython...) made it ~100 inputs/s
OURS = ("probe.wire.", "probe.checks.stun", "probe.checks.turn", "probe.checks.sip",
        "probe.checks.dns", "probe.dns.query", "probe.net.flow", "probe.core.canonical",
        "collector.batch", "collector.ingest", "collector.webrtc_peer")


def instrument_ours(atheris: object) -> None:
    import inspect

    instrument = atheris.instrument_func
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(OURS):
            continue
        for value in list(vars(module).values()):
            functions = [value] if inspect.isfunction(value) else [
                v for v in vars(value).values() if inspect.isfunction(v)
            ] if inspect.isclass(value) and value.__module__ == name else []
            for function in functions:
                if function.__module__ == name:
                    instrument(function)


def run_atheris(name: str) -> tuple[str, int, float, int, str]:
    with tempfile.TemporaryDirectory(prefix=f"vw-fuzz-{name}-") as corpus:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, __file__, "--worker", name, str(RUNS), corpus],
                              capture_output=True, text=True, cwd=ROOT)
        seconds = time.perf_counter() - start
    found = re.search(r"Done (\d+) runs", done.stderr)
    runs = int(found.group(1)) if found else 0
    crashes = 0 if done.returncode == 0 else 1
    detail = "" if done.returncode == 0 else done.stderr[-1500:]
    return name, runs, seconds, crashes, detail


def run_mutation(name: str) -> tuple[str, int, float, int, str]:
    from tests.support import fuzzer
    from tests.support.fuzz_targets import TARGETS, seeds

    stats = fuzzer.run(TARGETS[name], seeds(name), RUNS)
    detail = stats.findings[0].error if stats.findings else ""
    return name, stats.inputs, stats.seconds, len(stats.findings), detail


def main(names: list[str]) -> int:
    from tests.support.fuzz_targets import TARGETS

    try:
        import atheris  # noqa: F401

        engine, run = "atheris (coverage-guided)", run_atheris
    except ImportError:
        engine, run = "mutation fuzzer (tests/support/fuzzer.py)", run_mutation
    names = names or sorted(TARGETS)
    print(f"fuzzing {len(names)} parsers, {RUNS:,} inputs each, with {engine}")
    with ThreadPoolExecutor(PARALLEL if run is run_atheris else 1) as pool:
        results = list(pool.map(run, names))
    print(f"{'parser':<8} {'inputs':>11} {'seconds':>8} {'inputs/s':>9} {'escaping':>9}")
    failed = 0
    for name, runs, seconds, crashes, detail in results:
        print(f"{name:<8} {runs:>11,} {seconds:>8.1f} {runs / seconds:>9,.0f} {crashes:>9}")
        if crashes or runs < RUNS:
            failed += 1
            print(detail)
    print(f"total: {sum(r[1] for r in results):,} inputs, "
          f"{sum(r[3] for r in results)} escaping exceptions")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))
    else:
        raise SystemExit(main(sys.argv[1:]))
