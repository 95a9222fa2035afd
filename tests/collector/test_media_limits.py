"""The media service against abuse (issue 13). Reflector: ports from an
allow-list, TCP connections capped per listener and per source, a first-frame
timeout, flows and arrivals capped. Reference peer: a candidate cap, private
and mDNS candidates dropped from offers, no private host candidates in its
answers, sessions per key, a data-channel echo cap."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from probe.core.signing import ProbeKey
from probe.wire.sdp import sdp_candidates
from tests.collector.harness import Collector
from tests.collector.test_reflector import SESSIONS, call, free_port, open_session, packet
from tests.collector.test_webrtc_peer import client_offer, post_offer, register, running


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    env = {**os.environ, "VOIPWATCH_COLLECTOR_REFLECTOR_PORTS": "3478-3481,20000-40000",
           "VOIPWATCH_COLLECTOR_REFLECTOR_CONNECTIONS_PER_SOURCE": "3",
           "VOIPWATCH_COLLECTOR_REFLECTOR_FIRST_FRAME_SECONDS": "1"}
    with Collector(tmp_path_factory.mktemp("media-limits"), env=env) as running_collector:
        yield running_collector


@pytest.fixture
def key(collector: Collector) -> ProbeKey:
    key = ProbeKey.generate()
    httpx.post(collector.url + "/api/v1/probes", json={"public_key": key.public_b64})
    return key


def allowed_port(kind: int = socket.SOCK_DGRAM) -> int:
    while True:
        port = free_port(kind)
        if 20000 <= port <= 40000:
            return port


def test_ports_outside_the_allow_list_are_refused(collector: Collector, key: ProbeKey) -> None:
    response = call(collector, key, "POST", SESSIONS, {"port": 50001})
    assert (response.status_code, response.json()["error"]) == (403, "port_not_allowed")
    assert call(collector, key, "POST", SESSIONS, {"port": 22, "transport": "tcp"}
                ).status_code == 403


def closed_by_peer(sock: socket.socket, wait: float) -> bool:
    sock.settimeout(wait)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_tcp_connections_capped_per_source_and_silent_ones_closed(collector: Collector,
                                                                  key: ProbeKey) -> None:
    port = allowed_port(socket.SOCK_STREAM)
    open_session(collector, key, port, transport="tcp")
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    time.sleep(0.2)
    extra = socket.create_connection(("127.0.0.1", port))
    try:
        assert closed_by_peer(extra, 0.5)  # a fourth from the same source: refused
        start = time.monotonic()
        assert all(closed_by_peer(sock, 3) for sock in held)  # no first frame in 1 s
        assert time.monotonic() - start < 3
    finally:
        for sock in [*held, extra]:
            sock.close()


def test_flows_and_arrivals_are_capped(collector: Collector, key: ProbeKey) -> None:
    port = allowed_port()
    session = open_session(collector, key, port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for flow in range(40):
            sock.sendto(packet(session, flow, 0, size=64), ("127.0.0.1", port))
        time.sleep(0.5)
    report = call(collector, key, "GET", f"{SESSIONS}/{session['id']}/report").json()
    assert len(report["flows"]) == 8 and report["over_cap"] == 32


# --- the reference peer ----------------------------------------------------------


def candidate(address: str, kind: str = "host", port: int = 50000) -> str:
    return f"a=candidate:{abs(hash(address)) % 10**8} 1 udp 2122260223 {address} {port} typ {kind}"


async def test_offers_with_too_many_candidates_are_refused(tmp_path: Path) -> None:
    offer = await client_offer()
    flood = offer.replace("a=mid:0\r\n", "a=mid:0\r\n" + "".join(
        candidate(f"198.51.{i // 250}.{i % 250}", port=50000 + i) + "\r\n"
        for i in range(200)), 1)
    async with running(tmp_path, webrtc_max_sessions=4) as client:
        response = await post_offer(client, await register(client), flood)
    assert (response.status_code, response.json()["error"]) == (400, "bad_offer")
    assert "200 candidates" in response.json()["detail"]


def test_private_and_mdns_candidates_are_dropped() -> None:
    from collector.webrtc_peer import filter_candidates

    lines = [candidate(a) for a in ("192.168.1.7", "10.0.0.2", "fe80::1", "169.254.9.9",
                                    "4f1c1b9c-5a2e-4e3c-9d3a-0d1f2e3c4b5a.local", "127.0.0.1",
                                    "100.64.1.1", "203.0.113.9", "64:ff9b::a00:1",
                                    "8.8.8.8", "2606:4700::1")]
    sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n" + "\r\n".join(lines) + "\r\n"
    kept = [address for _, address in sdp_candidates(filter_candidates(sdp, False))]
    assert kept == ["8.8.8.8", "2606:4700::1"]
    assert len(sdp_candidates(filter_candidates(sdp, True))) == len(lines)  # a lab


def test_the_answer_lists_host_candidates_on_the_reached_address_only() -> None:
    from collector.webrtc_peer import reached_host_only

    lines = [candidate("203.0.113.9"), candidate("198.51.100.4"), candidate("2001:db8::9"),
             candidate("192.0.2.50", "srflx"), candidate("192.0.2.60", "relay")]
    sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n" + "\r\n".join(lines) + "\r\n"

    def kept(reached: str | None) -> list[tuple[str, str]]:
        return sdp_candidates(reached_host_only(sdp, reached))

    narrowed = [("host", "198.51.100.4"), ("srflx", "192.0.2.50"), ("relay", "192.0.2.60")]
    assert kept("198.51.100.4") == narrowed
    assert kept("::ffff:198.51.100.4") == narrowed  # a dual-stack socket's form
    assert kept("2001:db8:0::9") == [("host", "2001:db8::9"), *narrowed[1:]]
    # no host candidate where the offer arrived (a proxy, a NAT): all of them stay
    for reached in ("10.0.0.1", None, "", "not-an-address"):
        assert reached_host_only(sdp, reached) == sdp


async def test_answers_offer_no_private_host_candidates(tmp_path: Path) -> None:
    from probe.core.addresses import refusal

    async with running(tmp_path, webrtc_max_sessions=4) as client:
        response = await post_offer(client, await register(client), await client_offer())
    assert response.status_code == 200, response.text
    found = sdp_candidates(response.json()["sdp"])
    assert all(refusal(address) is None for _, address in found), found


async def test_sessions_per_key(tmp_path: Path) -> None:
    async with running(tmp_path, webrtc_max_sessions=8, webrtc_sessions_per_key=2) as client:
        greedy, other = await register(client), await register(client)
        offer = await client_offer()
        statuses = [(await post_offer(client, greedy, offer)).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        assert (await post_offer(client, other, offer)).status_code == 200


class FakeChannel:
    readyState = "open"

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.handlers: dict[str, Any] = {}

    def on(self, name: str) -> Any:
        return lambda handler: self.handlers.setdefault(name, handler)

    def send(self, message: Any) -> None:
        self.sent.append(message)


def test_data_channel_echo_is_capped() -> None:
    from collector.webrtc_peer import PeerPool, Session

    pool = PeerPool([], 1, 1, echo_max_messages=5)
    pc = FakeChannel()  # records its handlers the way aiortc's `on` does
    session = Session(1, "k", time.monotonic(), pc)
    pool._wire(session)
    channel = FakeChannel()
    pc.handlers["datachannel"](channel)
    for _ in range(50):
        channel.handlers["message"]("ping")
    assert len(channel.sent) == 5 and session.echo_refused == 45
