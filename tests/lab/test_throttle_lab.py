"""Throttling in the lab: the primitives the throttle scenarios need compile to
what a DPI does (classify a flow by its STUN signature, then police the whole
flow), the collector's reflector is never taken for a service's server, and,
on the session's lab, the throttle check's evidence (not only its verdict,
which test_accuracy checks): the time and data targets, the low absolute rate.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from deploy.lab.censor import Compiler
from deploy.lab.lab import LAB_CATALOGUE
from deploy.lab.scenario import SCENARIOS, load_scenario, parse_scenario
from deploy.lab.topology import Topology
from probe.catalogue import load_catalogue
from probe.core.record import LinkType

COLLECTOR = "192.88.99.80"
THROTTLE_ONLY = """version: 1
services:
  - id: lumen
    name: Lumen
    endpoints:
      - {check: throttle, url: "http://collector.lab", port: 3480, transport: udp,
         profile: whatsapp, role: call}
"""


def compile_text(text: str) -> str:
    scenario = parse_scenario(text, "x.yaml")
    return Compiler(load_catalogue(LAB_CATALOGUE)).compile(scenario, Topology("vwtx")).router_nft


def test_payload_rate_and_loss_act_on_the_whole_flow() -> None:
    nft = compile_text("description: x\npolicy:\n  cellular:\n"
                       "    - {action: rate, kbit: 64, payload: stun}\n"
                       "    - {action: loss, percent: 10, payload: stun}\n")
    up, down = nft.split("chain up_cellular")[1], nft.split("chain down_cellular")[1]
    up, down = up.split("\n  }")[0], down.split("\n  }")[0]
    # classified by the STUN cookie, then every packet of the flow, both ways
    assert "meta l4proto udp @th,96,32 0x2112a442 ct mark set 0x101" in up
    assert "ct mark 0x101 meta mark set 0x101 meta priority set 1:101" in up
    assert "ct mark 0x101 meta mark set 0x101 meta priority set 1:101" in down
    assert "ct mark 0x102 numgen random mod 100 < 10 drop" in up
    assert "ct mark 0x102 numgen random mod 100 < 10 drop" in down
    # a drop with a payload stays per packet (stun-payload-dropped)
    assert "ct mark" not in compile_text(
        "description: x\npolicy:\n  cellular:\n    - {action: drop, payload: stun}\n")


def test_the_reflector_is_not_a_call_server() -> None:
    """`role: call` names the services' call servers; a throttle endpoint's host
    is the collector, which no censor of the service would know."""
    scenario = load_scenario(SCENARIOS / "icmp-unreachable.yaml")
    nft = Compiler(load_catalogue(LAB_CATALOGUE)).compile(scenario, Topology("vwtx")).router_nft
    assert "192.88.99.11" in nft and COLLECTOR not in nft


def throttle_record(lab: Any, scenario: str, tmp_path: Path) -> dict[str, Any]:
    lab.apply(load_scenario(SCENARIOS / f"{scenario}.yaml"))
    catalogue = tmp_path / "throttle.yaml"
    catalogue.write_text(THROTTLE_ONLY)
    link = LinkType.CELLULAR
    result = subprocess.run(lab.run_argv(link, catalogue=catalogue), env=lab.probe_env(link),
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    (record,) = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return record


def test_stun_flows_policed_within_the_targets(lab: Any, tmp_path: Path) -> None:
    record = throttle_record(lab, "throttle-stun-rate", tmp_path)
    evidence = record["evidence"]
    assert (record["verdict"], record["blocking"]) == ("throttled", "throttle.rate"), evidence
    assert evidence["control"] == {"state": "ok"}
    assert evidence["seconds"] <= 10
    assert evidence["bytes_sent"] + evidence["bytes_received"] <= 1_000_000
    up = evidence["decision"]["directions"]["up"]
    assert up["deficit"] > 0.5 and up["ks_p"] < 0.01
    assert evidence["kbit"]["up"]["voip"] < 0.5 * evidence["kbit"]["up"]["control"]
    assert not evidence["low_rate"]  # the control got what was offered


def test_a_slow_port_is_open_with_its_low_rate_recorded(lab: Any, tmp_path: Path) -> None:
    record = throttle_record(lab, "throttle-port-rate", tmp_path)
    evidence = record["evidence"]
    assert record["verdict"] == "open", evidence
    assert evidence["low_rate"] is True
    offered = evidence["offered_kbit"]
    for direction in ("up", "rt"):
        assert evidence["kbit"][direction]["control"] < 0.75 * offered
        assert evidence["kbit"][direction]["voip"] < 0.75 * offered
