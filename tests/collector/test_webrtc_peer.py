"""The reference peer behind POST /api/v1/webrtc/offer, in process: signed
requests from registered probes only, a complete answer, a bounded number of
sessions (429 with Retry-After), each closed after its lifetime and at
shutdown, and ICE servers from the collector's settings only.

The offers carry no candidates (and no end-of-candidates), so neither side
sends a single packet: the peer waits for candidates until the session ends.
What the peer does in a real call (echo, audio loopback, hanging up with the
probe) is tested through the probe's check in tests/probe/checks/test_webrtc.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from collector.app import create_app
from collector.settings import Settings
from collector.webrtc_peer import PeerPool
from probe.catalogue import IceServer
from probe.core.auth import sign_request
from probe.core.signing import ProbeKey

PATH = "/api/v1/webrtc/offer"
LIFETIME = 1.5


async def client_offer() -> str:
    """An aiortc offer (audio + data channel), its candidates removed."""
    from aiortc import RTCConfiguration, RTCPeerConnection
    from aiortc.mediastreams import AudioStreamTrack

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.createDataChannel("echo")
    pc.addTrack(AudioStreamTrack())
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return "".join(line + "\r\n" for line in sdp.splitlines()
                   if not line.startswith(("a=candidate:", "a=end-of-candidates")))


@pytest.fixture
async def offer() -> str:
    return await client_offer()


@contextlib.asynccontextmanager
async def running(tmp_path: Path, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan (startup, shutdown) in this test's event loop."""
    app = create_app(Settings(data_dir=tmp_path, geoip_builtin=False,
                              webrtc_session_seconds=LIFETIME, **settings))
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://collector") as client:
        client.app = app  # type: ignore[attr-defined]  # the app rides on the client, for tests that look inside it
        yield client


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with running(tmp_path, webrtc_max_sessions=1) as found:
        yield found


async def register(client: httpx.AsyncClient) -> ProbeKey:
    key = ProbeKey.generate()
    response = await client.post("/api/v1/probes", json={"public_key": key.public_b64})
    assert response.status_code == 201, response.text
    return key


@pytest.fixture
async def key(client: httpx.AsyncClient) -> ProbeKey:
    return await register(client)


async def post_offer(client: httpx.AsyncClient, key: ProbeKey | None, sdp: str) -> Any:
    body = json.dumps({"sdp": sdp, "type": "offer"}).encode()
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers.update(sign_request(key, "POST", PATH, body))
    return await client.post(PATH, content=body, headers=headers)


def pool_of(client: httpx.AsyncClient) -> PeerPool:
    pool: PeerPool = client.app.state.services.extras["webrtc_peer"]  # type: ignore[attr-defined]  # set by running()
    return pool


async def test_a_registered_probe_gets_a_complete_answer(client: httpx.AsyncClient,
                                                         key: ProbeKey, offer: str) -> None:
    response = await post_offer(client, key, offer)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == "answer"
    assert "a=fingerprint:sha-256" in body["sdp"] and "a=sctp-port" in body["sdp"]
    assert "m=audio" in body["sdp"] and "a=sendrecv" in body["sdp"]  # audio goes back
    # gathering was complete before the answer (non-trickle)
    assert "a=end-of-candidates" in body["sdp"]
    assert set(body["peer"]["candidates"]) == {"host", "srflx", "prflx", "relay"}
    assert body["peer"]["lifetime_seconds"] == LIFETIME


async def test_unsigned_and_unknown_probes_are_refused(client: httpx.AsyncClient,
                                                       offer: str) -> None:
    unsigned = await post_offer(client, None, offer)
    assert unsigned.status_code == 401 and unsigned.json()["error"] == "unsigned_request"
    stranger = await post_offer(client, ProbeKey.generate(), offer)
    assert stranger.status_code == 401 and stranger.json()["error"] == "unknown_key"
    assert "webrtc_peer" not in client.app.state.services.extras  # type: ignore[attr-defined]  # set by running()


async def test_a_malformed_offer_is_a_400(client: httpx.AsyncClient, key: ProbeKey) -> None:
    response = await post_offer(client, key, "v=0\r\nthis is not SDP\r\n")
    assert response.status_code == 400 and response.json()["error"] == "bad_offer"
    assert pool_of(client).active == 0  # nothing held


async def test_sessions_are_bounded_and_end_after_their_lifetime(
        client: httpx.AsyncClient, key: ProbeKey, offer: str) -> None:
    assert (await post_offer(client, key, offer)).status_code == 200
    busy = await post_offer(client, key, offer)
    assert busy.status_code == 429 and busy.json()["error"] == "peer_busy"
    assert 1 <= int(busy.headers["Retry-After"]) <= LIFETIME + 1
    # the session ends after its lifetime; then the slot is free again
    deadline = time.monotonic() + LIFETIME + 10
    while pool_of(client).sessions and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not pool_of(client).sessions
    assert (await post_offer(client, key, offer)).status_code == 200


async def test_shutdown_closes_every_session(tmp_path: Path, offer: str) -> None:
    async with running(tmp_path, webrtc_max_sessions=4, webrtc_sessions_per_key=4) as client:
        key = await register(client)
        for _ in range(3):
            assert (await post_offer(client, key, offer)).status_code == 200
        pool = pool_of(client)
        sessions = list(pool.sessions.values())
        assert len(sessions) == 3
    assert not pool.sessions
    assert all(s.pc.connectionState == "closed" for s in sessions)


async def test_a_disabled_peer_answers_403(tmp_path: Path, offer: str) -> None:
    async with running(tmp_path, webrtc_enabled=False) as client:
        response = await post_offer(client, await register(client), offer)
    assert response.status_code == 403 and response.json()["error"] == "webrtc_disabled"


def test_the_ice_servers_are_the_collectors_own_never_aiortcs_default() -> None:
    assert PeerPool([], 1, 1)._configuration().iceServers == []  # not None: Google's STUN
    servers = [IceServer(urls="turn:192.0.2.1:3478?transport=udp", username="u",
                         credential="p"),
               IceServer(urls=("stun:192.0.2.1:3478", "stun:192.0.2.2:3478"))]
    configured = PeerPool(servers, 1, 1)._configuration().iceServers
    assert [s.urls for s in configured] == ["turn:192.0.2.1:3478?transport=udp",
                                           ["stun:192.0.2.1:3478", "stun:192.0.2.2:3478"]]
    assert configured[0].username == "u" and configured[0].credential == "p"


def test_ice_servers_come_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    from collector.settings import load_settings

    monkeypatch.setenv("VOIPWATCH_COLLECTOR_WEBRTC_ICE_SERVERS",
                       '[{"urls": "turns:192.0.2.1:443?transport=tcp", "username": "u", '
                       '"credential": "p"}]')
    settings = load_settings({"data_dir": tmp_path})
    assert settings.webrtc_ice_servers[0].urls == "turns:192.0.2.1:443?transport=tcp"
    monkeypatch.setenv("VOIPWATCH_COLLECTOR_WEBRTC_ICE_SERVERS", '[{"urls": "http://x"}]')
    with pytest.raises(Exception, match="webrtc_ice_servers"):
        load_settings({"data_dir": tmp_path})


GATHER_IN_NAMESPACE = """
import asyncio, sys
from aiortc import RTCPeerConnection, RTCSessionDescription
from collector.webrtc_peer import PeerPool

async def main():
    offerer = RTCPeerConnection()
    offerer.createDataChannel("x")
    await offerer.setLocalDescription(await offerer.createOffer())
    pool = PeerPool([], 4, 5.0, allow_private=True)
    for reached in ("192.0.2.2", "::ffff:192.0.2.3", None):
        answer = await pool._answer(offerer.localDescription.sdp, "k", reached)
        print(reached, sorted(line.split()[4] for line in answer.sdp.splitlines()
                              if line.startswith("a=candidate:") and " typ host" in line))
    await pool.close()
    await offerer.close()

asyncio.run(main())
"""


def test_the_peer_gathers_only_on_the_address_the_offer_reached(tmp_path: Path) -> None:
    """In a namespace holding three addresses, the peer's connection gathers a
    host candidate on the one the offer arrived at, so it sends connectivity
    checks from no other (the answer's SDP is read before any filter); with
    no address known, on all of them."""
    import os
    import subprocess
    import sys

    from tests.support.netns import require_lab

    require_lab()
    namespace = f"vwgather{os.getpid()}"
    ns = ["ip", "netns", "exec", namespace]
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        for command in (["ip", "link", "set", "lo", "up"],
                        ["ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1"],
                        ["ip", "link", "set", "v0", "up"], ["ip", "link", "set", "v1", "up"],
                        *(["ip", "address", "add", f"192.0.2.{n}/24", "dev", "v0"]
                          for n in (1, 2, 3))):
            subprocess.run([*ns, *command], check=True)
        root = Path(__file__).resolve().parents[2]
        out = subprocess.run([*ns, sys.executable, "-c", GATHER_IN_NAMESPACE], check=True,
                             capture_output=True, text=True, timeout=60, cwd=root,
                             env={**os.environ, "PYTHONPATH": str(root)}).stdout.splitlines()
    finally:
        subprocess.run(["ip", "netns", "del", namespace], check=False)
    assert out[0] == "192.0.2.2 ['192.0.2.2']"
    assert out[1] == "::ffff:192.0.2.3 ['192.0.2.3']"
    assert out[2] == "None ['192.0.2.1', '192.0.2.2', '192.0.2.3']"
