"""Default-catalogue benchmark through the lab's mirror (`make bench`).

A full pass of configs/catalogue.yaml, unchanged, from the cellular probe
host of a lab that mirrors it (deploy/lab/mirror.py: every name and IP
literal of the catalogue exists inside the lab only, and answers with the
real protocol: coturn, Kamailio, a TLS server; the throttle endpoints'
placeholder URL is the lab's collector). Nothing leaves the machine.

- The full pass (throttle checks included) unshaped and at 1 Mbit/s both
  ways (the lab's `rate` primitive: an htb bucket on the router), the same
  pass followed by its upload to the lab's collector (as `run` does on a Pi),
  with `--skip throttle`, whose bytes are the traffic figure, and with
  `--skip webrtc` (what the calls cost): wall
  time, the probe's peak RSS, the bytes on its interface and the packets the
  bucket held back, each the median of RUNS passes, with ratios to the
  unshaped run of the same kind, and the targets (full pass <= 20 s unshaped,
  <= 45 s at 1 Mbit/s; <= 1 MB without throttle; peak RSS <= 100 MB).
- A Pi back online: a full pass whose upload carries the records of
  BACKLOG_PASSES earlier passes too (more than one upload batch), once per link
  shape; its peak counts against the memory target like the others.
- The throttle checks on their own, per service: the median runtime and
  bytes each record reports.
- The verdicts of every pass: on the clean mirror all should be `open`;
  any other is listed with the failure the probe saw.

Needs root (network namespaces); without it, it says so and stops.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._labpass import Pass, measured_pass, median_pass, shape  # noqa: E402

RUNS = int(os.environ.get("BENCH_RUNS", "3"))
SHAPES = {"unshaped": None, "1 Mbit/s": 1000}
# (checks skipped, upload after the pass): the pass as `run` does it on a Pi
# (upload included: its memory adds to the pass's), without throttle (the
# traffic figure), and without the WebRTC calls (what the calls cost)
KINDS: dict[str, tuple[tuple[str, ...], bool]] = {
    "full pass": ((), False),
    "with upload": ((), True),
    "no throttle": (("throttle",), False),
    "no calls": (("webrtc",), False),
}
# a Pi back online: this many passes' records (more than one upload batch of
# 500) wait in the spool when `run` uploads after its pass
BACKLOG_PASSES = 6
MB = 1_000_000
# the project's targets for a pass of the default catalogue
TARGET_WALL_S = {"unshaped": 20.0, "1 Mbit/s": 45.0}
TARGET_BYTES_NO_THROTTLE = 1 * MB
TARGET_RSS_MB = 100.0


def rss_mb(p: Pass) -> float:
    return p.max_rss_mib * 1024 * 1024 / MB


def bench() -> int:
    from deploy.lab.lab import Lab
    from deploy.lab.mirror import DEFAULT_CATALOGUE
    from probe.core.record import LinkType

    link = LinkType.CELLULAR
    passes: dict[tuple[str, str], list[Pass]] = defaultdict(list)
    records: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    backlog: dict[str, tuple[Pass, int]] = {}
    with tempfile.TemporaryDirectory(prefix="vwdbench-") as workdir:
        lab = Lab(f"vwdb{os.getpid() % 100000}", Path(workdir), links=(link,),
                  mirror_catalogue=DEFAULT_CATALOGUE)
        lab.up(owner_pid=os.getpid())
        try:
            assert lab.mirror is not None
            for reason in lab.mirror.skipped:
                print(f"not mirrored: {reason}")
            for shape_name, kbit in SHAPES.items():
                shape(lab, link, kbit, shape_name)
                for kind, (skip, upload) in KINDS.items():
                    argv = lab.run_argv(link, catalogue=DEFAULT_CATALOGUE, skip=skip,
                                        upload=upload)
                    if not passes:
                        measured_pass(lab, link, argv)  # warm-up: caches, first imports
                    for _ in range(RUNS):
                        figures, found = measured_pass(lab, link, argv)
                        passes[kind, shape_name].append(figures)
                        records[kind, shape_name].extend(found)
                backlog[shape_name] = backlog_upload(lab, link)
        finally:
            lab.down()
    medians = {key: median_pass(found) for key, found in passes.items()}
    report(medians, records, backlog)
    return 0


def backlog_upload(lab: Any, link: Any) -> tuple[Pass, int]:
    """A full pass followed by the upload of BACKLOG_PASSES earlier passes'
    records too (passes without throttle checks, not uploaded): its figures
    and how many records it uploaded."""
    from deploy.lab.mirror import DEFAULT_CATALOGUE

    quiet = lab.run_argv(link, catalogue=DEFAULT_CATALOGUE, skip=("throttle",), upload=False)
    waiting = 0
    for _ in range(BACKLOG_PASSES):
        waiting += len(measured_pass(lab, link, quiet)[1])
    figures, found = measured_pass(lab, link, lab.run_argv(
        link, catalogue=DEFAULT_CATALOGUE, skip=(), upload=True))
    return figures, waiting + len(found)


def report(medians: dict[tuple[str, str], Pass],
           records: dict[tuple[str, str], list[dict[str, Any]]],
           backlog: dict[str, tuple[Pass, int]]) -> None:
    endpoints = medians["full pass", "unshaped"].records
    print(f"\nfull pass of the default catalogue through the lab's mirror ({endpoints:.0f} "
          f"endpoints), cellular probe, median of {RUNS}")
    print(f"  {'pass':<12} {'link':<10} {'wall s':>7} {'max RSS MB':>11} {'sent kB':>8} "
          f"{'received kB':>12} {'held back':>10}   ratios to unshaped (wall, RSS, sent, received)")
    for kind, shape_name in ((k, s) for k in KINDS for s in SHAPES):
        p, base = medians[kind, shape_name], medians[kind, "unshaped"]
        print(f"  {kind:<12} {shape_name:<10} {p.wall_s:7.2f} {rss_mb(p):11.1f} "
              f"{p.sent / 1000:8.1f} {p.received / 1000:12.1f} {p.overlimits:10.0f}   "
              f"x{p.wall_s / base.wall_s:.2f} x{p.max_rss_mib / base.max_rss_mib:.2f} "
              f"x{p.sent / base.sent:.2f} x{p.received / base.received:.2f}")

    print(f"\nfull pass uploading a backlog ({BACKLOG_PASSES} earlier passes' records "
          "with its own), one run")
    for shape_name, (p, uploaded) in backlog.items():
        base = medians["with upload", shape_name]
        # the passes without upload before it left theirs in the spool too
        print(f"  {shape_name:<10} {p.wall_s:7.2f} s {rss_mb(p):7.1f} MB peak RSS, over {uploaded} "
              f"records uploaded   x{p.wall_s / base.wall_s:.2f} "
              f"x{p.max_rss_mib / base.max_rss_mib:.2f} of the pass uploading its own records")

    print("\ntargets")
    for shape_name, limit in TARGET_WALL_S.items():
        wall = medians["full pass", shape_name].wall_s
        target(f"full pass, {shape_name}: {wall:.1f} s", wall <= limit, f"<= {limit:g} s")
    quiet = medians["no throttle", "unshaped"]
    total = quiet.sent + quiet.received
    target(f"traffic without throttle: {total / MB:.2f} MB sent + received",
           total <= TARGET_BYTES_NO_THROTTLE, f"<= {TARGET_BYTES_NO_THROTTLE / MB:g} MB")
    peak = max(rss_mb(p) for p in [*medians.values(), *(p for p, _ in backlog.values())])
    target(f"peak RSS: {peak:.1f} MB", peak <= TARGET_RSS_MB, f"<= {TARGET_RSS_MB:g} MB")

    print("\nthrottle checks (run one at a time after the others), median per service")
    print(f"  {'service':<20} {'port':>6} " + " ".join(
        f"{shape_name + ' s':>12} {'kB':>7}" for shape_name in SHAPES))
    rows: dict[tuple[str, int], dict[str, list[dict[str, Any]]]] = defaultdict(
        lambda: defaultdict(list))
    for shape_name in SHAPES:
        for record in records["full pass", shape_name]:
            if record["endpoint"]["check"] == "throttle":
                rows[record["service"], record["endpoint"]["port"]][shape_name].append(record)
    for (service, port), by_shape in rows.items():
        cells = []
        for shape_name in SHAPES:
            found = by_shape[shape_name]
            seconds = statistics.median(r["runtime_ms"] for r in found) / 1000
            size = statistics.median(r["evidence"]["bytes_sent"] + r["evidence"]["bytes_received"]
                                     for r in found) / 1000
            cells.append(f"{seconds:12.2f} {size:7.1f}")
        print(f"  {service:<20} {port:>6} " + " ".join(cells))

    print("\nverdicts (all passes)")
    for (kind, shape_name), found in records.items():
        counts = Counter(r["verdict"] for r in found)
        print(f"  {kind:<12} {shape_name:<10} " + ", ".join(f"{v} {n}" for v, n in
                                                              sorted(counts.items())))
        for r in found:
            if r["verdict"] != "open":
                endpoint, evidence = r["endpoint"], r["evidence"]
                print(f"    NOT OPEN {r['service']} {endpoint['check']} {endpoint['host']}:"
                      f"{endpoint['port']}/{endpoint['transport']}: {r['verdict']}"
                      f"{'/' + r['blocking'] if r.get('blocking') else ''}, failure "
                      f"{evidence.get('failure')}, {evidence.get('error', '')}".rstrip(", "))


def target(what: str, ok: bool, limit: str) -> None:
    print(f"  {what:<58} {'ok' if ok else 'OVER'} ({limit})")


def main() -> int:
    if os.geteuid() != 0:
        print("bench/default_pass.py: skipped, the lab's mirror needs root (network "
              "namespaces); run `sudo make bench`")
        return 0
    from deploy.lab.shell import LabError

    try:
        return bench()
    except LabError as exc:
        print(f"bench/default_pass.py: the lab failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
