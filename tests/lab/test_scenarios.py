"""Scenario files: every one loads and compiles, the required cases are
covered, and a bad file is rejected with its file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.lab import addresses
from deploy.lab.censor import Compiler
from deploy.lab.lab import LAB_CATALOGUE
from deploy.lab.scenario import SCENARIOS, all_scenarios, load_scenario, parse_scenario
from deploy.lab.shell import LabError
from deploy.lab.topology import Topology
from probe.catalogue import load_catalogue

# the cases issue 5 asks for, by file name
REQUIRED = {"all-open", "udp-3478-dropped", "stun-payload-dropped", "messaging-reset",
            "dns-nxdomain", "dns-bogon", "icmp-unreachable", "everything-dropped",
            "server-down", "loss-5", "dns-mismatch",
            # issue 6: a call to the reference peer fails at each stage in turn
            "webrtc-udp-dropped", "webrtc-dtls-dropped", "webrtc-media-dropped",
            # issue 16: a call cut after set-up, the collector blocked, a ClientHello reset
            "webrtc-media-cut", "collector-blocked", "tls-hello-reset"}


def test_required_scenarios_exist() -> None:
    names = {p.stem for p in SCENARIOS.glob("*.yaml")}
    assert names >= REQUIRED, REQUIRED - names


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.yaml")), ids=lambda p: p.stem)
def test_scenario_loads_and_compiles(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.name == path.stem
    compiled = Compiler(load_catalogue(LAB_CATALOGUE)).compile(scenario, Topology("vwlabx"))
    assert "table inet voipwatch_lab" in compiled.router_nft
    # every host a scenario names is one of the lab's
    for host in scenario.down:
        addresses.resolve(host)


def test_no_scenario_expects_blocked_without_a_policy() -> None:
    """A `blocked` expectation only where the scenario censors that link type."""
    for scenario in all_scenarios():
        for case in scenario.expect.cases:
            if case.verdict in ("blocked", "throttled"):
                assert case.link, f"{scenario.name}: a blocked case must name its link types"
                for link in case.link:
                    assert scenario.policy.get(link), f"{scenario.name}: {link} is not censored"


def test_every_label_and_policy_a_case_names_is_in_the_lab_catalogue() -> None:
    """A case selecting a label nothing has would match no record, silently."""
    endpoints = [e for s in load_catalogue(LAB_CATALOGUE).services for e in s.endpoints]
    labels = {e.label for e in endpoints if e.label}
    policies = {e.policy for e in endpoints if e.check == "webrtc"}
    for scenario in all_scenarios():
        for case in scenario.expect.cases:
            assert set(case.label or ()) <= labels, f"{scenario.name}: {case.label}"
            assert set(case.policy or ()) <= policies, f"{scenario.name}: {case.policy}"


def test_a_case_tells_the_webrtc_variants_apart() -> None:
    """Direct and TURN/UDP share check, host, port and transport: label and
    policy select one of them."""
    scenario = parse_scenario(
        "description: x\nexpect:\n  cases:\n"
        "    - {check: webrtc, label: turn-udp, verdict: inconclusive}\n"
        "    - {check: webrtc, policy: relay, verdict: blocked, blocking: webrtc.ice}\n",
        "x.yaml")

    def record(label: str, policy: str) -> dict[str, object]:
        return {"service": "lumen", "endpoint": {
            "check": "webrtc", "host": "collector.lab", "port": 80, "transport": "udp",
            "role": "call", "label": label, "policy": policy}}

    expect = scenario.expect.expected
    assert expect("cellular", record("direct", "all")).verdict == "open"
    assert expect("cellular", record("turn-udp", "relay")).verdict == "inconclusive"
    assert expect("cellular", record("turn-tcp", "relay")).blocking == "webrtc.ice"
    # a record without a label is not selected by a case that names one
    unlabelled = {"service": "lumen", "endpoint": {
        "check": "stun", "host": "relay.lumen.lab", "port": 3478, "transport": "udp",
        "role": "call"}}
    assert expect("cellular", unlabelled).verdict == "open"


@pytest.mark.parametrize("text, message", [
    ("description: x\npolicy:\n  cellular:\n    - {action: drop, ports: [3478]}\n",
     "x.yaml:4: policy.cellular.0: `ports` needs `proto: tcp` or `proto: udp`"),
    ("description: x\npolicy:\n  cellular:\n    - {action: zap}\n",
     "x.yaml:4: policy.cellular.0: unknown action 'zap'"),
    ("description: x\nexpect:\n  cases:\n    - {link: cellular, verdict: blocked}\n",
     "x.yaml:4: expect.cases.0: a `blocked` case must name its `blocking` method"),
    ("description: x\npolicy:\n  cellular:\n\n    - {action: drop, proto: udp, ports: [99999]}\n",
     "x.yaml:5: policy.cellular.0.ports: 99999 is not a port"),
    ("policy: {}\n", "x.yaml:1: description: Field required"),
    ("description: x\nexpect:\n  cases:\n    - {chek: stun, verdict: open}\n",
     "x.yaml:4: expect.cases.0.chek: unknown field"),
    ("description: x\npolicy: [\n", "x.yaml:3: not valid YAML"),
])
def test_bad_scenario_names_file_line_and_field(text: str, message: str) -> None:
    with pytest.raises(LabError) as caught:
        parse_scenario(text, "x.yaml")
    assert message in str(caught.value)


def test_unknown_host_is_named() -> None:
    scenario = parse_scenario(
        "description: x\npolicy:\n  cellular:\n    - {action: drop, hosts: [nowhere.lab]}\n",
        "x.yaml")
    with pytest.raises(LabError, match=r"'nowhere\.lab' is not a lab name"):
        Compiler(load_catalogue(LAB_CATALOGUE)).compile(scenario, Topology("vwlabx"))
