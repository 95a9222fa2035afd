"""WebRTC check benchmark (`make bench`): what one `webrtc` endpoint costs.

In the WebRTC call lab (tests/support/netns.py: a probe host, a router and an
internet with the collector's reference peer and coturn), one probe pass per
ICE variant (direct, TURN over UDP, TCP, TLS/443): wall time, the probe
process's own peak memory (max RSS, bench/_peak.py) and the bytes on the probe's
interface, each the median of RUNS passes and printed with its ratio to a
pass of one `tcp` endpoint to the same collector (the baseline: a run that
never imports aiortc).

Without root only aiortc's import cost is printed.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import _peak as peak  # noqa: E402

RUNS = int(os.environ.get("BENCH_RUNS", "3"))
IMPORT = ("import resource, time; t = time.perf_counter(); {}; "
          "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")


def import_cost() -> None:
    rows = []
    for name, statement in (("python (nothing)", "pass"),
                            ("probe.checks.webrtc.check", "import probe.checks.webrtc.check"),
                            ("aiortc (on the first webrtc endpoint)", "import aiortc")):
        samples = [subprocess.run([sys.executable, "-c", IMPORT.format(statement)], cwd=ROOT,
                                  capture_output=True, text=True, check=True).stdout.split()
                   for _ in range(5)]
        rows.append((name, statistics.median(float(s[0]) for s in samples),
                     statistics.median(int(s[1]) for s in samples) / 1024))
    base = rows[0][2]
    print("import cost (median of 5)")
    for name, seconds, rss in rows:
        print(f"  {name:<40} {seconds * 1000:7.1f} ms  max RSS {rss:6.1f} MiB"
              f"  x{rss / base:.2f}")


def counters(namespace: str) -> tuple[int, int]:
    out = subprocess.run(["ip", "-n", namespace, "-s", "-j", "link", "show", "eth0"],
                         capture_output=True, text=True, check=True).stdout
    stats = json.loads(out)[0]["stats64"]
    return stats["tx"]["bytes"], stats["rx"]["bytes"]


def one_pass(lab: Any, endpoint: dict[str, Any]) -> tuple[float, float, int, int, str]:
    services = [{"id": "bench", "name": "Bench", "endpoints": [endpoint]}]
    argv = lab.probe_argv(*lab.run_args(services, timeout=None, name="bench"))
    sent0, received0 = counters(lab.probe_ns)
    with tempfile.TemporaryFile() as out:
        # the probe itself (`ip netns exec` execs it in place)
        measured = peak.run(argv, env=lab.probe_env(), stdout=out, stderr=subprocess.DEVNULL)
        out.seek(0)
        records = [json.loads(line) for line in out.read().splitlines() if line.strip()]
    if measured.status != 0 or len(records) != 1:
        raise SystemExit("bench/webrtc.py: the probe run failed")
    sent1, received1 = counters(lab.probe_ns)
    return (measured.seconds, measured.peak_mib, sent1 - sent0, received1 - received0,
            records[0]["verdict"])


def lab_bench() -> None:
    from tests.support.netns import COLLECTOR_HOST, COLLECTOR_PORT, call_lab, ice_servers

    with tempfile.TemporaryDirectory(prefix="vwr-bench-") as workdir, \
            call_lab(Path(workdir), "b") as lab:
        variants: dict[str, dict[str, Any]] = {
            "tcp (baseline)": {"check": "tcp", "host": COLLECTOR_HOST, "port": COLLECTOR_PORT,
                               "role": "call"}}
        for name, servers, policy in (("webrtc direct", "stun", "all"),
                                      ("webrtc TURN/UDP", "turn-udp", "relay"),
                                      ("webrtc TURN/TCP", "turn-tcp", "relay"),
                                      ("webrtc TURN/TLS 443", "turn-tls", "relay")):
            variants[name] = {"check": "webrtc", "url": lab.offer_url, "policy": policy,
                              "ice_servers": ice_servers(servers), "role": "call"}
        results = {}
        for name, endpoint in variants.items():
            one_pass(lab, endpoint)  # warm-up
            passes = [one_pass(lab, endpoint) for _ in range(RUNS)]
            results[name] = [statistics.median(p[i] for p in passes) for i in range(4)]
            results[name].append(passes[-1][4])
    base = results["tcp (baseline)"]
    print(f"\none probe pass of one endpoint, WebRTC call lab, median of {RUNS}")
    print(f"  {'endpoint':<20} {'verdict':<8} {'wall s':>7} {'max RSS MiB':>12} {'sent kB':>8} "
          f"{'recv kB':>8}   ratios to the baseline (wall, RSS, sent, received)")
    for name, (wall, rss, sent, received, verdict) in results.items():
        print(f"  {name:<20} {verdict:<8} {wall:7.2f} {rss:12.1f} {sent / 1000:8.1f} "
              f"{received / 1000:8.1f}   x{wall / base[0]:.2f} x{rss / base[1]:.2f} "
              f"x{sent / base[2]:.1f} x{received / base[3]:.1f}")


def main() -> int:
    import_cost()
    from tests.support.netns import lab_problem

    problem = lab_problem()
    if problem:
        print(f"\nWebRTC lab figures skipped: the call lab {problem}")
        return 0
    lab_bench()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
