"""The topology: built as drawn, labs with different prefixes coexist, and
tear-down is complete and repeatable, also after the owner crashed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from deploy.lab.shell import namespaces, pid_alive, run
from deploy.lab.topology import NETNS_ETC, Topology, reap_stale
from probe.core.record import LinkType
from tests.conftest import ROOT
from tests.lab.conftest import require_root, session_prefix


def test_the_lab_is_built_as_drawn(lab: Topology) -> None:
    topology = lab.topology
    assert set(topology.namespaces()) <= set(namespaces())
    router_links = run(["ip", "-n", topology.router_ns, "-o", "link"]).stdout
    for name in ("cellular", "adsl", "wifi", "inet"):
        assert f" {name}@" in router_links
    assert run(["sysctl", "-n", "net.ipv4.ip_forward"],
               namespace=topology.router_ns).stdout.strip() == "1"
    # censor rules on the router only: the probe hosts have no ruleset of ours
    for link in topology.links:
        assert "voipwatch_lab" not in run(["nft", "list", "tables"],
                                          namespace=topology.probe_ns(link)).stdout
    assert "voipwatch_lab" in run(["nft", "list", "tables"],
                                  namespace=topology.router_ns).stdout
    resolv = (NETNS_ETC / topology.probe_ns(LinkType.CELLULAR) / "resolv.conf").read_text()
    assert "nameserver 192.88.99.53" in resolv
    status = lab.status()
    assert status["up"] and all(status["services"].values()), status


def test_a_second_lab_coexists_and_down_is_idempotent(lab: Topology) -> None:
    other = Topology(session_prefix("b"), (LinkType.CELLULAR,))
    other.up(owner_pid=os.getpid())
    try:
        assert set(other.namespaces()) <= set(namespaces())
        assert lab.topology.is_up()
    finally:
        assert sorted(other.down()) == sorted(other.namespaces())
    assert other.down() == []
    assert not set(other.namespaces()) & set(namespaces())
    assert not (NETNS_ETC / other.probe_ns(LinkType.CELLULAR)).exists()
    assert lab.topology.is_up()  # untouched


CRASHING_OWNER = """
import os, sys
from pathlib import Path
from deploy.lab.lab import Lab
lab = Lab(sys.argv[1], Path(sys.argv[2]), links=("cellular",))
lab.up(owner_pid=os.getpid())
print("up", flush=True)
os.kill(os.getpid(), 9)  # a crash: no finally, no atexit
"""


def test_a_crashed_owners_lab_is_reaped_completely(tmp_path: Path) -> None:
    require_root()
    prefix = session_prefix("c")
    result = subprocess.run([sys.executable, "-c", CRASHING_OWNER, prefix, str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == -signal.SIGKILL and "up" in result.stdout, result.stderr
    topology = Topology(prefix, (LinkType.CELLULAR,))
    assert topology.is_up()
    pids = [pid for pid in json.loads((tmp_path / "run" / "services.json").read_text()).values()
            if pid]
    assert pids and all(pid_alive(pid) for pid in pids)  # the daemons outlived their owner
    assert prefix in reap_stale()
    deadline = time.monotonic() + 5
    while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(pid_alive(pid) for pid in pids)
    assert not [n for n in namespaces() if n.startswith(f"{prefix}-")]
    assert not list(NETNS_ETC.glob(f"{prefix}-*"))


def test_down_from_the_command_line_is_idempotent() -> None:
    require_root()
    prefix = session_prefix("d")
    Topology(prefix, (LinkType.ADSL,)).up(owner_pid=os.getpid())
    command = [sys.executable, "-m", "deploy.lab", "--prefix", prefix, "down"]
    first = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0 and f"{prefix}-adsl" in first.stdout
    second = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0 and "no lab" in second.stdout
