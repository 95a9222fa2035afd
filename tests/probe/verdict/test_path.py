"""Where on the path, injected or genuine (probe.verdict.path), on traces
as probe.net.trace returns them; and the trace itself is unavailable, not an
error, without raw sockets. The traces in the lab: messaging-reset,
tls-hello-reset, udp-3478-dropped, icmp-unreachable."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from probe.core.record import Blocking, Transport
from probe.net.trace import Probe, Reply
from probe.run.pathfinder import method_for
from probe.verdict.path import injection, locate, sender_hop
from tests.conftest import ROOT


def te(ms: float = 1.0) -> Reply:
    return Reply("time_exceeded", ms, False, False, icmp=(11, 0), ip_ttl=64)


def rst(ip_ttl: int) -> Reply:
    return Reply("reset", 2.0, True, True, ip_ttl=ip_ttl, ip_id=0, window=0, options=())


def syn_ack(ip_ttl: int) -> Reply:
    return Reply("syn_ack", 1.0, True, True, ip_ttl=ip_ttl, ip_id=0, window=65160,
                 options=("mss", "sack_perm", "ts", "wscale"))


def trace(*replies: list[Reply]) -> list[Probe]:
    return [Probe(ttl, list(found)) for ttl, found in enumerate(replies, start=1)]


def test_a_reset_injected_at_hop_two() -> None:
    probes = trace([te()], [te()], [rst(63)], [rst(63)], [rst(63)])
    path = locate("tcp_syn", probes)
    assert (path["hop"], path["action"], path["first_blocked_ttl"]) == (2, "reset", 3)
    assert [h["reply"] for h in path["hops"]] == ["time_exceeded"] * 2 + ["reset"] * 3
    assert path["hops"][0] == {"ttl": 1, "reply": "time_exceeded", "icmp": [11, 0],
                               "public": False}
    found = injection("tcp_syn", probes)
    assert found is not None and found["status"] == "injected"
    assert found["mismatches"] == ["sender_hop"] and found["rst"]["sender_hop"] == 2


def test_the_servers_own_reset_is_consistent() -> None:
    """A closed port: the server (hop 4, Linux: initial TTL 64) resets the SYN."""
    probes = trace([te()], [te()], [te()], [rst(61)], [rst(61)])
    path = locate("tcp_syn", probes)
    assert (path["hop"], path["first_blocked_ttl"]) == (3, 4)
    found = injection("tcp_syn", probes)
    assert found is not None and found["status"] == "consistent" and not found["mismatches"]


def test_a_drop_is_after_the_last_hop_that_answered() -> None:
    path = locate("udp", trace([te()], [te()], [], [], []))
    assert (path["hop"], path["action"], path["first_blocked_ttl"]) == (2, "drop", 3)
    assert injection("udp", trace([te()], [te()], [], [])) is None
    # a silent router in between does not move the block
    assert locate("udp", trace([te()], [], [te()], [], []))["hop"] == 3


def test_an_answer_means_the_probe_went_through() -> None:
    path = locate("tcp_syn", trace([te()], [te()], [te()], [syn_ack(61)], [syn_ack(61)]))
    assert (path["action"], path["hop"], path["reached_ttl"]) == ("none", None, 4)


def test_a_client_hello_reset_against_the_same_flows_syn_ack() -> None:
    probes = trace([syn_ack(61), te()], [syn_ack(61), te()], [syn_ack(61), rst(63)],
                   [syn_ack(61), rst(63)])
    path = locate("tls_client_hello", probes)
    assert (path["hop"], path["action"]) == (2, "reset")
    found = injection("tls_client_hello", probes)
    assert found is not None and found["status"] == "injected"
    assert found["mismatches"] == ["sender_hop", "ip_ttl"]
    assert found["genuine"]["source"] == "same_flow" and found["genuine"]["ip_ttl"] == 61


def test_sender_hop_from_the_likely_initial_ttl() -> None:
    assert sender_hop(rst(63)) == 2 and sender_hop(rst(125)) == 4
    assert sender_hop(rst(250)) == 6


def test_which_blocks_are_traced() -> None:
    assert method_for("tcp", Transport.TCP, Blocking.TCP_RESET) == "tcp_syn"
    assert method_for("tls", Transport.TLS, Blocking.TLS_RESET) == "tls_client_hello"
    assert method_for("stun", Transport.UDP, Blocking.STUN_NO_RESPONSE) == "udp"
    assert method_for("turn", Transport.TLS, Blocking.TCP_TIMEOUT) == "tcp_syn"
    assert method_for("webrtc", Transport.UDP, Blocking.WEBRTC_ICE) is None
    assert method_for("dns", Transport.UDP, Blocking.DNS_NXDOMAIN) is None
    assert method_for("tcp", Transport.TCP, Blocking.DNS_BOGON) is None


UNPRIVILEGED = """
import asyncio, json
from probe.catalogue import ENDPOINT_ADAPTER
from probe.core.record import Blocking
from probe.run.pathfinder import locate_block
endpoint = ENDPOINT_ADAPTER.validate_python({"check": "tcp", "host": "127.0.0.1", "port": 9,
                                             "role": "call"})
print(json.dumps(asyncio.run(locate_block(endpoint, "127.0.0.1", Blocking.TCP_RESET))))
"""


def test_without_raw_sockets_the_trace_is_unavailable() -> None:
    command = [sys.executable, "-c", UNPRIVILEGED]
    if os.geteuid() == 0:  # drop root, and with it CAP_NET_RAW
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                   "--inh-caps=-all", *command]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["path"]["status"] == "unavailable"
    assert "CAP_NET_RAW" in found["path"]["reason"]
    assert found["injection"]["status"] == "unavailable"
