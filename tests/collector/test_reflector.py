"""The throttling reflector on a real collector process: sessions for signed
probes only, a listener per requested port, echo and accounting of packets
that carry the session's token, and the bounds (sessions per key, bytes,
lifetime, echo to the session's own address only)."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from probe.core.auth import sign_request
from probe.core.signing import ProbeKey
from probe.wire import throttle as wire
from tests.collector.harness import Collector

MAX_BYTES = 64 * 1024
SESSIONS = "/api/v1/reflector/sessions"


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    env = dict(os.environ, VOIPWATCH_COLLECTOR_REFLECTOR_MAX_BYTES=str(MAX_BYTES))
    with Collector(tmp_path_factory.mktemp("reflector"), env=env) as running:
        yield running


@pytest.fixture
def key(collector: Collector) -> ProbeKey:
    key = ProbeKey.generate()
    response = httpx.post(collector.url + "/api/v1/probes", json={"public_key": key.public_b64})
    assert response.status_code == 201, response.text
    return key


def call(collector: Collector, key: ProbeKey | None, method: str, path: str,
         body: dict[str, Any] | None = None) -> httpx.Response:
    content = json.dumps(body).encode() if body is not None else b""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if key is not None:
        headers.update(sign_request(key, method, path, content))
    return httpx.request(method, collector.url + path, content=content, headers=headers,
                         timeout=10)


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def open_session(collector: Collector, key: ProbeKey, port: int, transport: str = "udp",
                 duration: float = 20) -> dict[str, Any]:
    response = call(collector, key, "POST", SESSIONS,
                    {"port": port, "transport": transport, "duration_s": duration})
    assert response.status_code == 201, response.text
    session: dict[str, Any] = response.json()
    session["raw_key"] = base64.b64decode(session["key"])
    return session


def packet(session: dict[str, Any], flow: int, seq: int, size: int = 200) -> bytes:
    return os.urandom(size - wire.TOKEN_LEN) + wire.make_token(session["raw_key"], flow, seq)


def udp_client(source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source, 0))
    sock.settimeout(2)
    return sock


def echoes(sock: socket.socket, count: int, wait: float = 2.0) -> list[bytes]:
    got: list[bytes] = []
    sock.settimeout(wait)
    try:
        while len(got) < count:
            got.append(sock.recv(65535))
    except TimeoutError:
        pass
    return got


def test_only_signed_requests_from_registered_keys(collector: Collector) -> None:
    response = call(collector, None, "POST", SESSIONS, {"port": free_port()})
    assert response.status_code == 401 and response.json()["error"] == "unsigned_request"
    response = call(collector, ProbeKey.generate(), "POST", SESSIONS, {"port": free_port()})
    assert response.status_code == 401 and response.json()["error"] == "unknown_key"


def test_udp_echo_and_accounting(collector: Collector, key: ProbeKey) -> None:
    port = free_port()
    session = open_session(collector, key, port)
    assert session["address"] == "127.0.0.1" and session["port"] == port
    assert session["slice_ms"] == 100 and 0 < session["expires_in"] <= 30
    sent = [packet(session, 0, seq) for seq in range(5)] + \
        [packet(session, 1, seq, 300) for seq in range(3)]
    with udp_client() as sock:
        sock.sendto(os.urandom(200), ("127.0.0.1", port))  # no token: ignored
        for data in sent:
            sock.sendto(data, ("127.0.0.1", port))
        sock.sendto(sent[0], ("127.0.0.1", port))  # a duplicate
        got = echoes(sock, 9)
    assert sorted(got) == sorted([*sent, sent[0]])  # every token-bearing datagram, as sent
    report = call(collector, key, "GET", f"{SESSIONS}/{session['id']}/report").json()
    voip, control = report["flows"]["0"], report["flows"]["1"]
    assert (voip["name"], voip["packets"], voip["bytes"], voip["duplicates"]) == \
        ("voip", 6, 1200, 1)
    assert (control["name"], control["packets"], control["bytes"]) == ("control", 3, 900)
    assert sorted(seq for seq, _ in voip["arrivals"]) == [0, 1, 2, 3, 4]
    assert all(0 <= ms < 2000 for _, ms in voip["arrivals"] + control["arrivals"])
    assert sum(voip["slices"]) == 1000 and sum(control["slices"]) == 900  # duplicates once
    assert report["bytes_received"] == 2100 and report["bytes_echoed"] == 2100
    final = call(collector, key, "DELETE", f"{SESSIONS}/{session['id']}")
    assert final.status_code == 200 and final.json()["closed"] is True
    missing = call(collector, key, "GET", f"{SESSIONS}/{session['id']}/report")
    assert missing.status_code == 404 and missing.json()["error"] == "no_such_session"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind(("127.0.0.1", port))  # released with its last session


def test_two_sessions_share_a_port_by_token(collector: Collector, key: ProbeKey) -> None:
    port = free_port()
    first, second = open_session(collector, key, port), open_session(collector, key, port)
    with udp_client() as a, udp_client() as b:
        for seq in range(4):
            a.sendto(packet(first, 0, seq), ("127.0.0.1", port))
        for seq in range(2):
            b.sendto(packet(second, 1, seq), ("127.0.0.1", port))
        assert len(echoes(a, 4)) == 4 and len(echoes(b, 2)) == 2
    one = call(collector, key, "DELETE", f"{SESSIONS}/{first['id']}").json()
    two = call(collector, key, "DELETE", f"{SESSIONS}/{second['id']}").json()
    assert list(one["flows"]) == ["0"] and one["flows"]["0"]["packets"] == 4
    assert list(two["flows"]) == ["1"] and two["flows"]["1"]["packets"] == 2


def test_a_port_in_use_is_refused(collector: Collector, key: ProbeKey) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        response = call(collector, key, "POST", SESSIONS, {"port": port})
    assert response.status_code == 409
    assert response.json() == {"error": "port_unavailable", "detail": "the reflector cannot "
                               f"listen on UDP {port}: another program uses it"}


def test_bad_requests(collector: Collector, key: ProbeKey) -> None:
    for body in ({"port": 0}, {"port": 70000}, {"port": 3478, "transport": "tls"},
                 {"port": 3478, "extra": 1}):
        response = call(collector, key, "POST", SESSIONS, body)
        assert response.status_code == 422, body


def test_sessions_per_key_and_privacy_between_keys(collector: Collector,
                                                     key: ProbeKey) -> None:
    opened = [open_session(collector, key, free_port()) for _ in range(2)]
    response = call(collector, key, "POST", SESSIONS, {"port": free_port()})
    assert response.status_code == 429 and response.json()["error"] == "too_many_sessions"
    other = ProbeKey.generate()
    httpx.post(collector.url + "/api/v1/probes", json={"public_key": other.public_b64})
    path = f"{SESSIONS}/{opened[0]['id']}"
    assert call(collector, other, "GET", path + "/report").status_code == 404
    assert call(collector, other, "DELETE", path).status_code == 404
    for session in opened:
        assert call(collector, key, "DELETE", f"{SESSIONS}/{session['id']}").status_code == 200


def test_byte_budget_and_lifetime(collector: Collector, key: ProbeKey) -> None:
    port = free_port()
    session = open_session(collector, key, port, duration=1.0)
    with udp_client() as sock:
        for seq in range(MAX_BYTES // 1000 + 10):
            sock.sendto(packet(session, 0, seq, 1000), ("127.0.0.1", port))
            time.sleep(0.0005)
        got = echoes(sock, 1000, wait=0.5)
    report = call(collector, key, "GET", f"{SESSIONS}/{session['id']}/report").json()
    assert report["bytes_received"] <= MAX_BYTES and report["over_budget"] >= 10
    assert len(got) * 1000 == report["bytes_echoed"] <= MAX_BYTES
    time.sleep(1.0)  # the session's lifetime is over
    assert call(collector, key, "GET", f"{SESSIONS}/{session['id']}/report").status_code == 404
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind(("127.0.0.1", port))


def test_echo_only_to_the_address_that_opened_the_session(collector: Collector,
                                                           key: ProbeKey) -> None:
    port = free_port()
    session = open_session(collector, key, port)  # opened from 127.0.0.1
    with udp_client("127.0.0.2") as stranger:
        stranger.sendto(packet(session, 0, 0), ("127.0.0.1", port))
        assert echoes(stranger, 1, wait=0.5) == []
    report = call(collector, key, "DELETE", f"{SESSIONS}/{session['id']}").json()
    assert report["flows"]["0"]["packets"] == 1  # counted, but not reflected elsewhere
    assert report["echo_refused"] == 1 and report["bytes_echoed"] == 0


def test_tcp_session_rfc4571_frames(collector: Collector, key: ProbeKey) -> None:
    port = free_port(socket.SOCK_STREAM)
    session = open_session(collector, key, port, "tcp")
    frames = [packet(session, 1, seq, 150 + seq) for seq in range(5)]
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(b"".join(struct.pack("!H", len(f)) + f for f in frames))
        expected = sum(2 + len(f) for f in frames)
        data = b""
        while len(data) < expected:
            chunk = sock.recv(65535)
            assert chunk
            data += chunk
    assert data == b"".join(struct.pack("!H", len(f)) + f for f in frames)
    report = call(collector, key, "DELETE", f"{SESSIONS}/{session['id']}").json()
    assert report["transport"] == "tcp"
    assert report["flows"]["1"]["packets"] == 5
    assert sorted(seq for seq, _ in report["flows"]["1"]["arrivals"]) == list(range(5))


def test_a_stranger_on_a_tcp_port_is_hung_up_on(collector: Collector, key: ProbeKey) -> None:
    port = free_port(socket.SOCK_STREAM)
    session = open_session(collector, key, port, "tcp")
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(struct.pack("!H", 100) + os.urandom(100))
        assert sock.recv(100) == b""  # closed without an echo
    call(collector, key, "DELETE", f"{SESSIONS}/{session['id']}")


def test_routes_are_in_the_openapi_document(collector: Collector) -> None:
    paths = httpx.get(collector.url + "/openapi.json").json()["paths"]
    assert SESSIONS in paths and f"{SESSIONS}/{{session_id}}/report" in paths
