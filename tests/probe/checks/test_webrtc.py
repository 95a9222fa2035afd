"""The webrtc check, end to end: `voipwatch-probe run` on a probe host in a
network namespace, calling the collector's reference peer through a router
whose nftables forward hook plays the censor, with coturn (UDP, TCP, TLS/443)
beside the peer. Each scenario names the stage where the call must break.

Without namespaces: the check's local behaviour (its ICE servers are exactly
the catalogue's, a collector that refuses the connection, a relay policy with
no TURN server) and the pure evidence helpers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from probe.catalogue import ENDPOINT_ADAPTER
from probe.checks.base import Context, ControlState, Status
from probe.checks.webrtc import check as webrtc
from probe.checks.webrtc.stats import (
    MediaSample,
    echo_evidence,
    media_evidence,
    timeline_evidence,
)
from probe.core.failures import Failure
from probe.core.record import Blocking
from probe.core.signing import ProbeKey
from probe.verdict.methods import suspected
from probe.wire.sdp import candidate_counts, reachable_candidate
from tests.support.netns import CallLab, call_lab, ice_servers, require_lab
from tests.support.tcp_servers import closed_port

# the censor's rules (router, forward hook); payload offsets from the UDP header
DROP_UDP = "meta l4proto udp drop"
# RFC 6347 §4.1: a DTLS record starts with its content type, 22 = handshake, then 0xfe
DROP_DTLS_HANDSHAKE = "meta l4proto udp @th,64,8 0x16 @th,72,8 0xfe drop"
# RFC 7983 §7: a first byte of 128-191 is RTP or RTCP; DTLS (20-63, which
# carries SCTP) and STUN (0-3) on the same 5-tuple pass
DROP_RTP = "meta l4proto udp @th,64,8 & 0xc0 == 0x80 drop"
# a call that sets up, then dies: each UDP flow (but DNS's and the relay's)
# carries 60 packets, then nothing either way
CUT_AFTER_60 = "udp dport != { 53, 3478 } udp sport != { 53, 3478 } ct original packets > 60 drop"

VARIANTS = {"direct": ("stun", "all"), "turn-udp": ("turn-udp", "relay"),
            "turn-tcp": ("turn-tcp", "relay"), "turn-tls": ("turn-tls", "relay")}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CallLab]:
    require_lab()
    with call_lab(tmp_path_factory.mktemp("vwr-webrtc"), "p") as running:
        yield running


def catalogue(lab: CallLab, *labels: str) -> list[dict[str, Any]]:
    endpoints = []
    for label in labels:
        servers, policy = VARIANTS[label]
        endpoints.append({"check": "webrtc", "url": lab.offer_url, "policy": policy,
                          "ice_servers": ice_servers(servers), "role": "call", "label": label})
    return [{"id": "lumen", "name": "Lumen", "endpoints": endpoints}]


def call(lab: CallLab, *labels: str, rules: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    lab.censor(*rules)
    try:
        records = lab.run_catalogue(catalogue(lab, *labels))
    finally:
        lab.censor()
    by_label = {r["endpoint"]["label"]: r for r in records}
    assert sorted(by_label) == sorted(labels)
    return by_label


def stage(record: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = record["evidence"]["stages"][name]
    return found


# --- in the namespaces -------------------------------------------------------------------


def test_open_path_every_variant_calls_through(lab: CallLab) -> None:
    records = call(lab, "direct", "turn-udp", "turn-tcp", "turn-tls")
    for label, record in records.items():
        evidence = record["evidence"]
        assert record["verdict"] == "open", (label, evidence)
        assert record["blocking"] is None
        assert evidence["status"] == "ok" and evidence["control"]["state"] == "ok"
        assert [s for s in evidence["stages"] if evidence["stages"][s].get("ok")] == [
            "gathering", "signalling", "ice", "dtls", "sctp", "echo", "media"]
        # the peer echoed every message and sent our audio back
        assert stage(record, "echo")["received"] == webrtc.ECHO_MESSAGES
        media = stage(record, "media")
        assert media["packets_sent"] > 50 and media["packets_received"] > 50
        assert media["loss"] is not None and media["loss"] < 0.2
        assert evidence["peer"]["reachable"] is True
        # the peer's namespace holds every lab service's address; its answer lists
        # a host candidate on the one address the probe signalled to, no other
        assert evidence["peer"]["candidates"]["host"] == 1
        # the catalogue's ICE server, only that one
        assert evidence["ice_servers"] == [ice_servers(VARIANTS[label][0])[0]["urls"]]
        # never the probe's own address, not even in the SDP-derived evidence
        assert lab.probe_address not in json.dumps(record)
    assert stage(records["direct"], "gathering")["candidates"]["host"] >= 1
    assert stage(records["direct"], "ice")["pair"]["local"] in ("host", "srflx", "prflx")
    for label in ("turn-udp", "turn-tcp", "turn-tls"):
        gathered = stage(records[label], "gathering")["candidates"]
        assert gathered["relay"] == 1 and gathered["host"] == gathered["srflx"] == 0
        assert stage(records[label], "ice")["pair"]["local"] == "relay"
    assert records["turn-tls"]["endpoint"]["transport"] == "tls"
    assert records["turn-tcp"]["endpoint"]["transport"] == "tcp"
    # the peer ended each session when the probe hung up, long before its lifetime
    closed = lab.collector_events("webrtc_session_closed")
    assert len(closed) >= 4 and all(e["seconds"] < 15 for e in closed[-4:])
    assert all(e["echoed"] == webrtc.ECHO_MESSAGES for e in closed[-4:])


def test_udp_dropped_blocks_the_direct_call_but_turn_over_tls_works(lab: CallLab) -> None:
    records = call(lab, "direct", "turn-udp", "turn-tls", rules=(DROP_UDP,))
    direct = records["direct"]
    assert direct["verdict"] == "blocked" and direct["blocking"] == "webrtc.ice"
    assert direct["evidence"]["phase"] == "ice"
    assert stage(direct, "gathering")["candidates"]["srflx"] == 0  # STUN dropped too
    # no relay candidate: the TURN server is the turn check's to judge, with its
    # control; the reference peer cannot vouch for it, so no `blocked` here
    relay_udp = records["turn-udp"]
    assert relay_udp["verdict"] == "inconclusive"
    assert relay_udp["evidence"]["failure"] == "ice_no_candidates"
    assert relay_udp["evidence"]["suspected"] == "webrtc.ice"
    assert "signalling" not in relay_udp["evidence"]["stages"]
    assert records["turn-tls"]["verdict"] == "open"


def test_dtls_handshake_dropped_after_ice_is_webrtc_dtls(lab: CallLab) -> None:
    records = call(lab, "direct", "turn-udp", rules=(DROP_DTLS_HANDSHAKE,))
    direct = records["direct"]
    assert direct["verdict"] == "blocked" and direct["blocking"] == "webrtc.dtls"
    assert stage(direct, "ice")["ok"] is True
    assert stage(direct, "dtls")["ok"] is False
    assert direct["evidence"]["failure"] == "generic_timeout_error"
    # inside TURN ChannelData the DTLS header is 4 bytes further: the rule misses it
    assert records["turn-udp"]["verdict"] == "open"


def test_media_dropped_while_the_data_channel_works_is_webrtc_media(lab: CallLab) -> None:
    records = call(lab, "direct", rules=(DROP_RTP,))
    direct = records["direct"]
    assert direct["verdict"] == "blocked" and direct["blocking"] == "webrtc.media"
    assert stage(direct, "echo")["received"] == webrtc.ECHO_MESSAGES
    media = stage(direct, "media")
    assert media["packets_sent"] > 50 and media["packets_received"] == 0
    assert media["rtcp_reports"] is False and media["ok"] is False


def test_audio_cut_after_the_call_set_up_is_webrtc_media_with_the_moment(
        lab: CallLab) -> None:
    """Setup, echo and the first audio pass; then the flow is cut both ways.
    Before the timeline this was `open` with loss 0.0 (loss among the packets
    received): now it is `blocked`, and the record says when the audio stopped."""
    records = call(lab, "direct", "turn-tls", rules=(CUT_AFTER_60,))
    direct = records["direct"]
    assert direct["verdict"] == "blocked" and direct["blocking"] == "webrtc.media"
    assert direct["evidence"]["failure"] == "media_interrupted"
    assert stage(direct, "echo")["received"] == webrtc.ECHO_MESSAGES
    media = stage(direct, "media")
    assert media["interrupted"] is True and media["ok"] is False
    assert 0 < media["packets_received"] < media["packets_expected"] / 2
    assert 0 < media["stopped_ms"] < webrtc.MEDIA_SECONDS * 1000 - 800
    assert direct["evidence"]["stopped_ms"] == media["stopped_ms"]
    assert media["loss"] > 0.4
    # over TLS to the relay nothing is cut: sustained audio, the peer's reports keep coming
    relayed = stage(records["turn-tls"], "media")
    assert records["turn-tls"]["verdict"] == "open" and relayed["interrupted"] is False
    assert relayed["missing"] < 10 and relayed["reports_ms"]


# --- without namespaces ------------------------------------------------------------------


def endpoint(url: str, servers: list[dict[str, str]], policy: str = "all") -> Any:
    return ENDPOINT_ADAPTER.validate_python({"check": "webrtc", "url": url, "policy": policy,
                                             "ice_servers": servers, "role": "call"})


async def test_the_peer_connection_uses_exactly_the_catalogues_ice_servers() -> None:
    none = webrtc.Call(endpoint("http://127.0.0.1:9/", []), Context())._peer_connection()
    relay = webrtc.Call(endpoint("http://127.0.0.1:9/", ice_servers("turn-tls"), "relay"),
                        Context())._peer_connection()
    try:
        for transceiver in none.getTransceivers():
            connection = transceiver.sender.transport.transport._connection
            # not aiortc's default (stun.l.google.com): nothing at all
            assert connection.stun_server is None and connection.turn_server is None
        connection = relay.getTransceivers()[0].sender.transport.transport._connection
        assert connection.turn_ssl is True and connection.turn_transport == "tcp"
        assert connection.turn_server[1] == 443
    finally:
        await none.close()
        await relay.close()


async def test_an_unreachable_collector_is_no_evidence_of_blocking() -> None:
    url = f"http://127.0.0.1:{closed_port()}/api/v1/webrtc/offer"
    observation = await webrtc.run(endpoint(url, []),
                                   Context(timeout=2, signer=ProbeKey.generate()))
    assert observation.status is Status.FAILED
    assert observation.failure is Failure.CONNECTION_RESET
    assert suspected(observation) is Blocking.TCP_RESET  # suspected only:
    assert observation.control is ControlState.ABSENT  # nothing vouches for the peer
    assert observation.evidence["phase"] == "signalling"
    assert observation.evidence["stages"]["signalling"]["step"] == "connect"


async def test_relay_policy_without_a_turn_server_gathers_nothing_and_sends_nothing() -> None:
    observation = await webrtc.run(endpoint("http://127.0.0.1:9/", ice_servers("stun"), "relay"),
                                   Context(timeout=2, signer=ProbeKey.generate()))
    assert observation.failure is Failure.ICE_NO_CANDIDATES
    assert observation.evidence["stages"]["gathering"]["candidates"]["relay"] == 0
    assert "signalling" not in observation.evidence["stages"]
    assert observation.control is ControlState.ABSENT


async def test_without_a_key_the_check_does_not_run() -> None:
    observation = await webrtc.run(endpoint("http://127.0.0.1:9/", []), Context())
    assert observation.status is Status.UNMEASURABLE and observation.failure is Failure.NOT_RUN


def test_importing_the_check_does_not_import_aiortc() -> None:
    code = ("import sys, probe.checks.webrtc.check, probe.run.runner; "
            "print('aiortc' in sys.modules, 'av' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[3], check=True)
    assert result.stdout.split() == ["False", "False"]


ANSWER = """v=0
m=audio 9 UDP/TLS/RTP/SAVPF 96
a=candidate:aaa 1 udp 2130706431 192.88.99.80 40000 typ host
a=candidate:bbb 1 udp 2130706431 10.1.2.3 40001 typ host
a=candidate:ccc 1 udp 16777215 192.88.99.11 50000 typ relay raddr 192.88.99.11 rport 1
m=application 9 UDP/DTLS/SCTP webrtc-datachannel
a=candidate:aaa 1 udp 2130706431 192.88.99.80 40002 typ host
a=candidate:bbb 1 udp 2130706431 10.1.2.3 40003 typ host
a=candidate:ccc 1 udp 16777215 192.88.99.11 50001 typ relay raddr 192.88.99.11 rport 2
"""


def test_candidates_are_counted_once_across_bundled_m_lines() -> None:
    assert candidate_counts(ANSWER) == {"host": 2, "srflx": 0, "prflx": 0, "relay": 1}


@pytest.mark.parametrize(("sdp", "address", "reachable"), [
    (ANSWER, None, True),  # a relay candidate
    ("a=candidate:a 1 udp 1 10.1.2.3 4 typ host\n", None, False),  # private only
    ("a=candidate:a 1 udp 1 10.1.2.3 4 typ host\n", "10.1.2.3", True),  # where we signalled
    ("a=candidate:a 1 udp 1 192.88.99.80 4 typ host\n", None, True),  # a global address
    ("a=candidate:a 1 udp 1 abc.local 4 typ host\n", None, False),  # mDNS: unknown
    ("", None, False),
])
def test_the_peer_vouches_for_itself_only_with_a_reachable_candidate(
        sdp: str, address: str | None, reachable: bool) -> None:
    assert reachable_candidate(sdp, address) is reachable


def test_media_and_echo_evidence() -> None:
    stats = [
        SimpleNamespace(type="outbound-rtp", kind="audio", packetsSent=125, bytesSent=40000),
        SimpleNamespace(type="inbound-rtp", kind="audio", packetsReceived=95, packetsLost=5,
                        jitter=96),
        SimpleNamespace(type="remote-inbound-rtp", kind="audio", fractionLost=64, jitter=48,
                        roundTripTime=0.0123),
        SimpleNamespace(type="transport", bytesSent=1, bytesReceived=2),
    ]
    media = media_evidence(stats, 48000, 2.5)
    assert media == {"seconds": 2.5, "packets_sent": 125, "bytes_sent": 40000,
                     "packets_received": 95, "loss": 0.05, "jitter_ms": 2.0,
                     "rtcp_reports": True, "peer_loss": 0.25, "peer_jitter_ms": 1.0,
                     "rtcp_rtt_ms": 12.3}
    assert echo_evidence(4, [3.0, 1.0, 2.0]) == {
        "sent": 4, "received": 3, "loss": 0.25,
        "rtt_ms": {"min": 1.0, "median": 2.0, "max": 3.0}}
    assert echo_evidence(5, []) == {"sent": 5, "received": 0, "loss": 1.0}


def samples(arrivals: list[tuple[float, int]],
            reports: tuple[float, ...] = ()) -> list[MediaSample]:
    """A timeline sampled every 50 ms for 2.5 s: `arrivals` gives (ms, count so far)."""
    out, count = [], 0
    for step in range(51):
        ms = step * 50.0
        for at, total in arrivals:
            if at <= ms:
                count = total
        out.append(MediaSample(ms, count, sum(r <= ms for r in reports)))
    return out


def steady(until_ms: float, every_ms: float = 20.0) -> list[tuple[float, int]]:
    return [(20.0 + i * every_ms, i + 1) for i in range(int((until_ms - 20) // every_ms) + 1)]


def test_sustained_audio_is_not_interrupted() -> None:
    timeline = timeline_evidence(samples(steady(2500), reports=(900.0, 1800.0)))
    assert timeline["interrupted"] is False and "stopped_ms" not in timeline
    assert timeline["missing"] <= 2 and timeline["longest_gap_ms"] <= 50
    assert timeline["reports_ms"] == [900, 1800]
    assert abs(sum(timeline["slices"]) - timeline["packets_expected"]) <= 2


def test_audio_that_stops_is_interrupted_with_the_moment() -> None:
    timeline = timeline_evidence(samples(steady(820)))
    assert timeline["interrupted"] is True
    assert timeline["stopped_ms"] == 850.0  # the first look that saw the last packet
    assert timeline["slices"][4:] == [0] * (len(timeline["slices"]) - 4)


def test_a_late_burst_is_not_an_interruption() -> None:
    """A stalled event loop (or peer) delays packets; they come in a burst: nothing missing."""
    delayed = [*steady(800), (1900.0, 123)]
    timeline = timeline_evidence(samples(delayed))
    assert timeline["longest_gap_ms"] >= 1000 and timeline["interrupted"] is False


def test_random_loss_is_not_an_interruption() -> None:
    lossy = [(at, round(count * 0.9)) for at, count in steady(2500)]
    timeline = timeline_evidence(samples(lossy))
    assert timeline["interrupted"] is False and 0 < timeline["missing"] < 20


def test_no_audio_at_all_is_no_timeline_judgement() -> None:
    timeline = timeline_evidence(samples([]))
    assert timeline["interrupted"] is False and timeline["packets_expected"] is None
