"""`POST /api/v1/control`, the test helper: signed requests from registered keys
only; the probe's own checks run from the collector against real servers."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from probe.catalogue import ENDPOINT_ADAPTER
from probe.checks.base import Status
from probe.core.auth import sign_request
from probe.core.signing import ProbeKey
from probe.run.control import ControlClient
from tests.collector.conftest import register
from tests.collector.harness import Collector
from tests.support.dns_server import NXDOMAIN, DnsServer
from tests.support.pki import TestCA
from tests.support.tcp_servers import closed_port, tcp_server

PATH = "/api/v1/control"


def signed_post(http: httpx.Client, key: ProbeKey, payload: Any, *, now: float | None = None,
                path: str = PATH) -> httpx.Response:
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", **sign_request(key, "POST", path, body, now)}
    return http.post(PATH, content=body, headers=headers)


TCP = {"check": "tcp", "host": "127.0.0.1", "port": 9, "role": "call"}


def test_only_signed_requests_from_registered_keys(http: httpx.Client,
                                                   collector: Collector) -> None:
    key = ProbeKey.generate()
    payload = {"endpoints": [TCP]}
    unsigned = http.post(PATH, json=payload)
    assert (unsigned.status_code, unsigned.json()["error"]) == (401, "unsigned_request")
    assert signed_post(http, key, payload).json()["error"] == "unknown_key"
    register(http, key)
    assert signed_post(http, key, payload).status_code == 200
    stale = signed_post(http, key, payload, now=time.time() - 3600)
    assert (stale.status_code, stale.json()["error"]) == (401, "stale_request")
    wrong_path = signed_post(http, key, payload, path="/api/v1/other")
    assert (wrong_path.status_code, wrong_path.json()["error"]) == (401, "bad_signature")
    body = json.dumps(payload).encode()
    headers = sign_request(key, "POST", PATH, body)
    tampered = http.post(PATH, content=body.replace(b"9", b"8"), headers=headers)
    assert tampered.json()["error"] == "bad_signature"
    collector.cli("probes", "revoke", key.key_id, check=True)
    revoked = signed_post(http, key, payload)
    assert (revoked.status_code, revoked.json()["error"]) == (403, "revoked_key")


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[dict[str, Any]]:
    ca = TestCA(tmp_path)
    yield {"ca": ca, "leaf": ca.issue("chat.test"), "tmp": tmp_path}


def start(tmp: Path, *args: str, env: dict[str, str] | None = None) -> Collector:
    return Collector(tmp / f"collector-{len(list(tmp.iterdir()))}", None, args,
                     env={**os.environ, **(env or {})}).start()


async def test_checks_run_from_the_collector(lab: dict[str, Any]) -> None:
    key = ProbeKey.generate()
    zone = {"open.test": ["93.184.216.34"], "gone.test": NXDOMAIN}
    async with DnsServer(zone) as dns, tcp_server() as tcp_port, \
            tcp_server(ssl_context=lab["leaf"].server_context()) as tls_port:
        collector = start(lab["tmp"], "--control-allow-private", "--resolver",
                          f"127.0.0.1:{dns.port}", env={"SSL_CERT_FILE": str(lab["ca"].path)})
        try:
            with collector.client() as http:
                register(http, key)
            raw = [
                {"check": "dns", "host": "open.test", "role": "messaging"},
                {"check": "dns", "host": "gone.test", "role": "messaging"},
                {"check": "tcp", "host": "127.0.0.1", "port": tcp_port, "role": "call"},
                {"check": "tcp", "host": "127.0.0.1", "port": closed_port(), "role": "call"},
                {"check": "tls", "host": "127.0.0.1", "port": tls_port, "sni": "chat.test",
                 "role": "messaging"},
                {"check": "webrtc", "url": "https://127.0.0.1/offer", "ice_servers": [],
                 "role": "call"},
            ]
            endpoints = [ENDPOINT_ADAPTER.validate_python(e) for e in raw]
            results = await ControlClient(collector.url, key).fetch(endpoints)
        finally:
            collector.stop()
    dns_open, dns_gone, tcp_open, tcp_closed, tls, webrtc = results
    assert dns_open is not None and dns_open.status is Status.OK
    assert dns_open.evidence["answers"] == ["93.184.216.34"]
    assert dns_gone is not None and dns_gone.failure == "dns_nxdomain_error"
    assert tcp_open is not None and tcp_open.status is Status.OK
    assert tcp_closed is not None and tcp_closed.status is Status.FAILED
    assert tcp_closed.failure == "connection_reset" or tcp_closed.failure == "connection_refused"
    assert tls is not None and tls.status is Status.OK, tls  # trusted via SSL_CERT_FILE
    assert webrtc is None  # not a check the test helper runs


async def test_bounds_and_private_addresses(lab: dict[str, Any]) -> None:
    key = ProbeKey.generate()
    async with tcp_server() as tcp_port, DnsServer({"intranet.test": ["127.0.0.1"]}) as dns:
        collector = start(lab["tmp"], "--resolver", f"127.0.0.1:{dns.port}", env={
            "VOIPWATCH_COLLECTOR_CONTROL_RATE_PER_MINUTE": "6",
            "VOIPWATCH_COLLECTOR_CONTROL_MAX_ENDPOINTS": "4"})
        try:
            async with httpx.AsyncClient(base_url=collector.url, timeout=30) as http:
                await http.post("/api/v1/probes", json={"public_key": key.public_b64})

                async def post(endpoints: list[dict[str, Any]]) -> httpx.Response:
                    body = json.dumps({"endpoints": endpoints}).encode()
                    return await http.post(PATH, content=body, headers={
                        "Content-Type": "application/json",
                        **sign_request(key, "POST", PATH, body)})

                loopback = {"check": "tcp", "host": "127.0.0.1", "port": tcp_port,
                            "role": "call"}
                local_name = {"check": "tcp", "host": "intranet.test", "port": tcp_port,
                              "role": "call"}
                invalid = {"check": "tcp", "host": "127.0.0.1", "role": "call"}  # no port
                response = await post([loopback, local_name, invalid])
                # without --control-allow-private the collector does not reach its own network
                assert response.json() == {"results": [None, None, None]}
                too_many = await post([loopback] * 5)
                assert (too_many.status_code, too_many.json()["error"]) == (413,
                                                                            "batch_too_large")
                limited = await post([loopback] * 4)  # 3 + 4 > 6 per minute
                assert (limited.status_code, limited.json()["error"]) == (429, "rate_limited")
                assert int(limited.headers["Retry-After"]) >= 1
        finally:
            collector.stop()
