"""What the lab benches share: one measured probe pass on a lab's probe host
and the lab's `rate` primitive as a link shape.

A pass's figures: wall time, the probe process's peak memory (its own max
RSS, bench/_peak.py), the bytes its interface sent and received (the namespace's
veth counters) and how many packets the router's bucket held back (htb
`overlimits`; 0 means the pass never needed more than the rate).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Any

from bench import _peak as peak


@dataclass
class Pass:
    wall_s: float
    max_rss_mib: float
    sent: int
    received: int
    records: int
    overlimits: int = 0


def counters(namespace: str) -> tuple[int, int]:
    """Bytes sent and received so far on the namespace's eth0."""
    out = subprocess.run(["ip", "-n", namespace, "-s", "-j", "link", "show", "eth0"],
                         capture_output=True, text=True, check=True).stdout
    stats = json.loads(out)[0]["stats64"]
    return stats["tx"]["bytes"], stats["rx"]["bytes"]


def overlimits(lab: Any, link: Any) -> int:
    """Packets the router's shaping classes held back so far, both directions."""
    total = 0
    for device in (str(link), "inet"):
        out = subprocess.run(["ip", "netns", "exec", lab.topology.router_ns, "tc", "-s", "class",
                              "show", "dev", device], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if "overlimits" in line:
                total += int(line.split("overlimits")[1].split()[0])
    return total


def measured_pass(lab: Any, link: Any, argv: list[str]) -> tuple[Pass, list[dict[str, Any]]]:
    """Run `argv` (a `lab.run_argv(...)`, which prints JSON records) on the
    link's probe host: its figures and its records."""
    namespace = lab.topology.probe_ns(link)
    sent0, received0 = counters(namespace)
    held0 = overlimits(lab, link)
    with tempfile.TemporaryFile() as out:
        # `ip netns exec` execs the probe in place: the measured process is the probe
        measured = peak.run(argv, env=lab.probe_env(link), stdout=out,
                            stderr=subprocess.DEVNULL)
        out.seek(0)
        records = [json.loads(line) for line in out.read().splitlines() if line.strip()]
    if measured.status != 0:
        raise SystemExit(f"the probe failed with status {measured.status}")
    sent1, received1 = counters(namespace)
    return Pass(measured.seconds, measured.peak_mib, sent1 - sent0, received1 - received0,
                len(records), overlimits(lab, link) - held0), records


def median_pass(passes: list[Pass]) -> Pass:
    return Pass(*(statistics.median(getattr(p, f) for p in passes)
                  for f in ("wall_s", "max_rss_mib", "sent", "received", "records",
                            "overlimits")))


def shape(lab: Any, link: Any, kbit: int | None, name: str) -> None:
    """Rate-limit the link both ways to `kbit` (None: unshaped), with the
    lab's `rate` primitive (docs/lab.md)."""
    from deploy.lab.scenario import Scenario

    policy = {str(link): [{"action": "rate", "kbit": kbit}]} if kbit else {}
    lab.apply(Scenario.model_validate({"name": "bench", "description": name,
                                       "links": [str(link)], "policy": policy}))
