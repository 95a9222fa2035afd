"""Probe benchmark on the censorship lab (`make bench`).

A full pass of the lab catalogue from the cellular probe host, on an
unshaped link, under 1 Mbit/s both ways (cellular-like) and under 128 kbit/s
(EDGE-like, where the link is the bottleneck), with the lab's `rate`
primitive (an htb token bucket on the router, in each direction): wall time,
the probe process's peak memory (its own max RSS, bench/_peak.py) and the bytes
its interface sent and received (the namespace's veth counters), plus how
many packets the bucket held back (htb `overlimits`: 0 means the pass never
needed more than the rate). Each figure is the median of RUNS passes,
printed with its ratio to the unshaped run.

The start-up cost of the command lines is bench/startup.py's. Needs root
(network namespaces); without it, it says so.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._labpass import measured_pass, median_pass, shape  # noqa: E402

BIN = Path(sys.executable).parent
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
SHAPES = {"unshaped": None, "1 Mbit/s": 1000, "128 kbit/s": 128}


def lab_bench() -> None:
    from deploy.lab.lab import Lab
    from probe.core.record import LinkType

    link = LinkType.CELLULAR
    with tempfile.TemporaryDirectory(prefix="vwbench-") as workdir:
        lab = Lab(f"vwlabb{os.getpid() % 100000}", Path(workdir), links=(link,))
        lab.up(owner_pid=os.getpid())
        try:
            results = {}
            for name, kbit in SHAPES.items():
                shape(lab, link, kbit, name)
                measured_pass(lab, link, lab.run_argv(link))  # warm-up: caches, key creation
                results[name] = median_pass([measured_pass(lab, link, lab.run_argv(link))[0]
                                             for _ in range(RUNS)])
        finally:
            lab.down()
    base = results["unshaped"]
    print(f"\nfull pass of the lab catalogue ({base.records:.0f} endpoints), cellular probe, "
          f"median of {RUNS}")
    print(f"  {'link':<12} {'wall s':>8} {'max RSS MiB':>12} {'sent kB':>9} {'received kB':>12}"
          f" {'held back':>10}   ratios to unshaped (wall, RSS, sent, received)")
    for name, p in results.items():
        print(f"  {name:<12} {p.wall_s:8.2f} {p.max_rss_mib:12.1f} {p.sent / 1000:9.1f} "
              f"{p.received / 1000:12.1f} {p.overlimits:10.0f}   x{p.wall_s / base.wall_s:.2f} "
              f"x{p.max_rss_mib / base.max_rss_mib:.2f} x{p.sent / base.sent:.2f} "
              f"x{p.received / base.received:.2f}")


def main() -> int:
    if os.geteuid() != 0:
        print("lab pass figures skipped: they need root (network namespaces); "
              "run `sudo make bench`")
        return 0
    from deploy.lab.shell import LabError

    try:
        lab_bench()
    except LabError as exc:
        print(f"bench/probe_pass.py: the lab failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
