"""Throttle-check benchmark on the censorship lab (`make bench`, root).

Repeats the throttle check (profile `whatsapp`, UDP 3480) from the lab's
cellular host under conditions whose truth is known, and prints:

- detection rate when the call-like flows (classified by their STUN signature,
  the whole flow policed, as a DPI does) get 10%, 25% and 50% of the rate the
  control gets (the rate offered by the profile), and when they alone lose 10%;
- false-positive rate (`throttled` where nothing differentiates) on a clean
  link, under 3% and 10% random loss on every flow, and with every flow on
  the port sharing one slow bucket;
- seconds and bytes per service test (median and maximum), rounds used;
- the deficit, KS p-value and loss figures behind the thresholds of
  probe/checks/throttle/stats.py (docs/throttle.md quotes them);
- Wehe's published settings beside ours.

`BENCH_THROTTLE_RUNS` (default 10) sets the repetitions per condition. Each
check runs in a process of its own inside the probe host's namespace
(`python bench/throttle.py --worker 1`), on a freshly installed policy, so
each figure is the check alone.
Without root only a note is printed.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RUNS = int(os.environ.get("BENCH_THROTTLE_RUNS", "10"))
PREFIX = "vwt"  # namespaces vwt-cell, vwt-router, vwt-inet
CONTROL_KBIT = 255  # the whatsapp profile's offered rate, UDP payload

STUN_FLOWS = {"payload": "stun", "hosts": ["collector.lab"]}
CONDITIONS: list[tuple[str, str, list[dict[str, Any]]]] = [
    # (name, truth, rules on the cellular link)
    ("clean link", "open", []),
    ("3% loss, every flow", "open", [{"action": "loss", "percent": 3}]),
    ("10% loss, every flow", "open", [{"action": "loss", "percent": 10}]),
    ("port shared at 200 kbit/s", "open",
     [{"action": "rate", "kbit": 200, "proto": "udp", "ports": [3480]}]),
    ("VoIP at 50% of control", "throttled",
     [{"action": "rate", "kbit": CONTROL_KBIT // 2, **STUN_FLOWS}]),
    ("VoIP at 25% of control", "throttled",
     [{"action": "rate", "kbit": CONTROL_KBIT // 4, **STUN_FLOWS}]),
    ("VoIP at 10% of control", "throttled",
     [{"action": "rate", "kbit": CONTROL_KBIT // 10, **STUN_FLOWS}]),
    ("VoIP alone loses 10%", "throttled",
     [{"action": "loss", "percent": 10, **STUN_FLOWS}]),
]


# --- the worker: N checks in the probe host's namespace --------------------------------


async def worker(runs: int) -> None:
    from probe.catalogue import ENDPOINT_ADAPTER
    from probe.checks.base import Context, ControlState
    from probe.checks.throttle import check as throttle
    from probe.core.signing import load_key
    from probe.store.state import key_path, load_config
    from probe.verdict.classify import Situation, classify
    from probe.verdict.methods import suspected

    key = load_key(key_path(load_config()))
    endpoint = ENDPOINT_ADAPTER.validate_python(
        {"check": "throttle", "url": "http://collector.lab", "port": 3480,
         "transport": "udp", "profile": "whatsapp", "role": "call"})
    for _ in range(runs):
        ctx = Context(timeout=5, resolver=("192.88.99.53", 53), signer=key)
        start = time.monotonic()
        observation = await throttle.run(endpoint, ctx)
        seconds = time.monotonic() - start
        result = classify(Situation(observation.status, suspected(observation),
                                    observation.control or ControlState.ABSENT))
        decision = observation.evidence.get("decision", {})
        print(json.dumps({
            "verdict": str(result.verdict), "blocking": result.blocking and str(result.blocking),
            "seconds": seconds, "bytes": observation.bytes_sent + observation.bytes_received,
            "rounds": len(observation.evidence.get("rounds", [])),
            "directions": decision.get("directions", {}),
            "error": observation.evidence.get("error")}), flush=True)


# --- the driver ----------------------------------------------------------------------


def run_condition(lab: Any, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """RUNS checks, each on a freshly installed policy: a shaper's queue left
    over from the previous run (seconds of it at 25 kbit/s) must not slow the next."""
    from deploy.lab.scenario import Scenario
    from probe.core.record import LinkType

    scenario = Scenario.model_validate({"name": "bench", "description": "throttle bench",
                                        "links": ["cellular"], "policy": {"cellular": rules}})
    link = LinkType.CELLULAR
    argv = ["ip", "netns", "exec", lab.topology.probe_ns(link), sys.executable,
            str(Path(__file__).resolve()), "--worker", "1"]
    results = []
    for _ in range(RUNS):
        lab.apply(scenario)
        out = subprocess.run(argv, env=lab.probe_env(link), capture_output=True, text=True,
                             timeout=90, check=False)
        if out.returncode != 0:
            raise SystemExit(f"the throttle bench worker failed: {out.stderr.strip()[-500:]}")
        results.extend(json.loads(line) for line in out.stdout.splitlines() if line.strip())
    return results


def summarise(name: str, truth: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    verdicts = [r["verdict"] for r in results]
    up = [r["directions"]["up"] for r in results if r["directions"]]
    rt = [r["directions"]["rt"] for r in results if r["directions"]]
    return {
        "condition": name, "truth": truth, "runs": len(results),
        "throttled": verdicts.count("throttled"), "open": verdicts.count("open"),
        "inconclusive": verdicts.count("inconclusive"), "blocked": verdicts.count("blocked"),
        "methods": sorted({r["blocking"] for r in results if r["blocking"]}),
        "seconds": [r["seconds"] for r in results], "bytes": [r["bytes"] for r in results],
        "rounds": [r["rounds"] for r in results],
        "deficit": [max(u["deficit"], t["deficit"]) for u, t in zip(up, rt, strict=True)],
        "ks_p": [min(u["ks_p"], t["ks_p"]) for u, t in zip(up, rt, strict=True)],
        "loss_diff": [max(u["loss_voip"] - u["loss_control"], t["loss_voip"] - t["loss_control"])
                      for u, t in zip(up, rt, strict=True)],
        "noise": [max(u["noise"], t["noise"]) for u, t in zip(up, rt, strict=True)],
        "errors": sorted({r["error"] for r in results if r["error"]}),
    }


def report(rows: list[dict[str, Any]]) -> None:
    print(f"\nthrottle check, whatsapp profile, cellular probe, {RUNS} runs per condition")
    print(f"  {'condition':<27} {'truth':<9} {'thr':>4} {'open':>4} {'inc':>4}   "
          f"{'deficit med [min,max]':<24} {'loss diff max':>13} {'noise max':>9}  method")
    for row in rows:
        deficit = row["deficit"] or [0.0]
        print(f"  {row['condition']:<27} {row['truth']:<9} {row['throttled']:>4} {row['open']:>4}"
              f" {row['inconclusive']:>4}   {statistics.median(deficit):6.2f} "
              f"[{min(deficit):5.2f},{max(deficit):5.2f}]    "
              f"{max(row['loss_diff'] or [0.0]):13.3f} {max(row['noise'] or [0.0]):9.3f}  "
              f"{','.join(row['methods'])}")
        for error in row["errors"]:
            print(f"      error: {error}")
    positives = [r for r in rows if r["truth"] == "throttled"]
    negatives = [r for r in rows if r["truth"] == "open"]
    print("\ndetection rate (throttled / runs where the VoIP flow was differentiated)")
    for row in positives:
        print(f"  {row['condition']:<27} {row['throttled']}/{row['runs']}"
              f"  ({100 * row['throttled'] / max(row['runs'], 1):.0f}%)")
    fp = sum(r["throttled"] + r["blocked"] for r in negatives)
    total = sum(r["runs"] for r in negatives)
    inconclusive = sum(r["inconclusive"] for r in negatives)
    print(f"false positives under equal treatment: {fp}/{total}"
          f"  (inconclusive: {inconclusive}/{total})")
    seconds = [s for r in rows for s in r["seconds"]]
    sizes = [b for r in rows for b in r["bytes"]]
    rounds = [n for r in rows for n in r["rounds"]]
    print(f"per service test: {statistics.median(seconds):.1f} s median, {max(seconds):.1f} s max;"
          f" {statistics.median(sizes) / 1000:.0f} kB median, {max(sizes) / 1000:.0f} kB max;"
          f" second round in {sum(n > 1 for n in rounds)}/{len(rounds)} tests")
    null_p = [p for r in negatives for p in r["ks_p"]]
    null_deficit = [d for r in negatives for d in r["deficit"]]
    if null_deficit:
        print(f"under equal treatment: deficit at most {max(null_deficit):.3f}, "
              f"KS p at least {min(null_p):.2g}")
    print("Wehe (Northeastern University): 40-45 s per replay (original + bit-inverted), 100 "
          "throughput samples per replay, several MB per app; KS test plus area threshold, "
          "a second replay when in doubt")


def main() -> int:
    if "--worker" in sys.argv:
        asyncio.run(worker(int(sys.argv[sys.argv.index("--worker") + 1])))
        return 0
    if os.geteuid() != 0:
        print("throttle bench skipped: it needs root (network namespaces); "
              "run `sudo make bench`")
        return 0
    from deploy.lab.lab import Lab
    from deploy.lab.topology import Topology, reap_stale
    from probe.core.record import LinkType

    reap_stale()
    if Topology(PREFIX).existing():
        print(f"throttle bench: a lab named {PREFIX} is up (another bench?); "
              f"`python -m deploy.lab --prefix {PREFIX} down` removes it", file=sys.stderr)
        return 1
    rows = []
    with tempfile.TemporaryDirectory(prefix="vwt-bench-") as workdir:
        lab = Lab(PREFIX, Path(workdir), links=(LinkType.CELLULAR,))
        lab.up(owner_pid=os.getpid())
        try:
            for name, truth, rules in CONDITIONS:
                started = time.monotonic()
                rows.append(summarise(name, truth, run_condition(lab, rules)))
                print(f"  {name}: done in {time.monotonic() - started:.0f} s", file=sys.stderr)
        finally:
            lab.down()
    report(rows)
    if os.environ.get("BENCH_THROTTLE_JSON"):
        Path(os.environ["BENCH_THROTTLE_JSON"]).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
