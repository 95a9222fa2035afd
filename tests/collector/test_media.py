"""The media service (reference peer and reflector in one process) with the API
in two workers: reflector sessions opened, read and closed through whichever
worker answers, a WebRTC offer answered and the peer's session bound held in
one place, a probe's throttle check through it end to end, the child process
restarted when it dies and stopped with the collector; and the reflector's
refusal to hand a loopback address to a probe elsewhere."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from collector.app import create_app
from collector.settings import Settings
from probe.core.signing import ProbeKey
from tests.collector.harness import Collector
from tests.collector.test_reflector import (
    SESSIONS,
    call,
    echoes,
    free_port,
    open_session,
    packet,
    udp_client,
)
from tests.collector.test_webrtc_peer import client_offer
from tests.conftest import probe_command

OFFER = "/api/v1/webrtc/offer"


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    env = dict(os.environ, VOIPWATCH_COLLECTOR_WEBRTC_MAX_SESSIONS="1",
               VOIPWATCH_COLLECTOR_WEBRTC_SESSION_SECONDS="3")
    with Collector(tmp_path_factory.mktemp("media"), args=["--workers", "2"],
                   env=env) as running:
        yield running


@pytest.fixture
def key(collector: Collector) -> ProbeKey:
    key = ProbeKey.generate()
    response = httpx.post(collector.url + "/api/v1/probes", json={"public_key": key.public_b64})
    assert response.status_code == 201, response.text
    return key


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(child) for child in text]
    return found


def media_pid(collector: Collector) -> int:
    assert collector.proc is not None
    for child in children(collector.proc.pid):
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        if b"media" in cmdline:
            return child
    raise AssertionError("no media child")


def test_a_reflector_session_through_either_worker(collector: Collector,
                                                   key: ProbeKey) -> None:
    port = free_port()
    session = open_session(collector, key, port)
    assert session["address"] == "127.0.0.1"
    sent = [packet(session, 0, seq) for seq in range(6)]
    with udp_client() as sock:
        for data in sent:
            sock.sendto(data, ("127.0.0.1", port))
        assert sorted(echoes(sock, 6)) == sorted(sent)
    # each request on a new connection: the two workers share them out, and
    # every one finds the session
    for _ in range(8):
        report = call(collector, key, "GET", f"{SESSIONS}/{session['id']}/report")
        assert report.status_code == 200, report.text
        assert report.json()["flows"]["0"]["packets"] == 6
    final = call(collector, key, "DELETE", f"{SESSIONS}/{session['id']}")
    assert final.status_code == 200 and final.json()["closed"] is True
    assert call(collector, key, "GET", f"{SESSIONS}/{session['id']}/report").status_code == 404


def test_webrtc_offers_meet_one_peer(collector: Collector, key: ProbeKey) -> None:
    offer = asyncio.run(client_offer())
    body = json.dumps({"sdp": offer, "type": "offer"}).encode()

    def post() -> httpx.Response:
        from probe.core.auth import sign_request

        headers = {"Content-Type": "application/json",
                   **sign_request(key, "POST", OFFER, body)}
        return httpx.post(collector.url + OFFER, content=body, headers=headers, timeout=30)

    first = post()
    assert first.status_code == 200, first.text
    assert first.json()["type"] == "answer" and "a=fingerprint:sha-256" in first.json()["sdp"]
    # one session allowed (webrtc_max_sessions=1): in one process, whichever worker
    # the second offer reaches, it finds the slot taken
    for _ in range(3):
        busy = post()
        assert busy.status_code == 429 and busy.json()["error"] == "peer_busy"
        assert busy.headers["Retry-After"]
    unsigned = httpx.post(collector.url + OFFER, content=body,
                          headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401 and unsigned.json()["error"] == "unsigned_request"


def test_a_probe_throttle_check_through_two_workers(collector: Collector,
                                                    tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = dict(os.environ, VOIPWATCH_HOME=str(home))
    subprocess.run([*probe_command(), "register", "--collector", collector.url], check=True,
                   capture_output=True, timeout=60, env=env)
    catalogue = tmp_path / "catalogue.yaml"
    catalogue.write_text(
        "version: 1\nservices:\n  - id: whatsapp\n    name: WhatsApp\n    endpoints:\n"
        f"      - {{check: throttle, url: 'https://collector.example.org', "
        f"port: {free_port()}, transport: udp, profile: whatsapp, role: call}}\n")
    result = subprocess.run(
        [*probe_command(), "run", "--catalogue", str(catalogue), "--collector", collector.url,
         "--no-upload", "--json"], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    (record,) = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert record["verdict"] == "open", record["evidence"]


def test_the_media_child_is_restarted_and_stopped(tmp_path: Path) -> None:
    collector = Collector(tmp_path / "restart", args=["--workers", "2"]).start()
    try:
        first = media_pid(collector)
        key = ProbeKey.generate()
        httpx.post(collector.url + "/api/v1/probes", json={"public_key": key.public_b64})
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            response = call(collector, key, "POST", SESSIONS, {"port": free_port()})
            if response.status_code == 201:
                break
            assert response.status_code == 503, response.text
            assert response.json()["error"] == "media_unavailable"
            time.sleep(0.3)
        assert response.status_code == 201, response.text
        second = media_pid(collector)
        assert second != first
    finally:
        collector.stop()
    assert not Path(f"/proc/{second}").exists() or \
        Path(f"/proc/{second}/stat").read_text().split()[2] == "Z"


async def test_no_loopback_address_for_a_probe_elsewhere(tmp_path: Path) -> None:
    """Behind a reverse proxy the API sees its requests arrive on loopback: the
    reflector must say it needs `reflector_address` rather than send the probe
    to 127.0.0.1."""
    from probe.core.auth import sign_request

    app = create_app(Settings(data_dir=tmp_path, geoip_builtin=False))
    key = ProbeKey.generate()
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 40000))
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1") as client:
        registered = await client.post("/api/v1/probes", json={"public_key": key.public_b64})
        assert registered.status_code == 201
        body = json.dumps({"port": free_port()}).encode()
        response = await client.post(SESSIONS, content=body, headers={
            "Content-Type": "application/json", **sign_request(key, "POST", SESSIONS, body)})
    assert response.status_code == 503
    assert response.json()["error"] == "reflector_address_unset"
    assert "reflector_address" in response.json()["detail"]


def test_a_media_service_of_its_own(tmp_path: Path) -> None:
    """deploy/systemd/voipwatch-collector-media.service's command line, and an API
    told its URL (media_url): a reflector session through the API."""
    from tests.conftest import BIN, ROOT

    unit = (ROOT / "deploy" / "systemd" / "voipwatch-collector-media.service").read_text()
    (line,) = [x for x in unit.splitlines() if x.startswith("ExecStart=")]
    argv = line.removeprefix("ExecStart=").replace("/opt/voipwatch/bin/", f"{BIN}/").split()
    data = tmp_path / "data"
    data.mkdir()
    env = dict(os.environ, VOIPWATCH_COLLECTOR_HOME=str(data))
    log = tmp_path / "media.log"
    with log.open("wb") as out:
        media = subprocess.Popen([*argv, "--port", "0"], stdout=out, stderr=out, env=env)
    try:
        url = ""
        deadline = time.monotonic() + 30
        while not url and time.monotonic() < deadline:
            assert media.poll() is None, log.read_text()
            for entry in log.read_text().splitlines():
                if '"media_listening"' in entry:
                    url = json.loads(entry)["url"]
            time.sleep(0.1)
        assert url, log.read_text()
        api = Collector(data, env={**env, "VOIPWATCH_COLLECTOR_MEDIA_URL": url})
        with api:
            key = ProbeKey.generate()
            httpx.post(api.url + "/api/v1/probes", json={"public_key": key.public_b64})
            session = open_session(api, key, free_port())
            final = call(api, key, "DELETE", f"{SESSIONS}/{session['id']}")
            assert final.status_code == 200 and final.json()["closed"] is True
        # the media service answered them: its access log has both requests
        served = [json.loads(x) for x in log.read_text().splitlines() if '"path"' in x]
        assert {(e["method"], e["status"]) for e in served
                if e["path"].startswith(SESSIONS)} == {("POST", 201), ("DELETE", 200)}
    finally:
        media.terminate()
        media.wait(15)
