"""The test helper is no door into the collector's network and no weapon
(issue 13): every name resolved once, every address vetted against the
deny-list, the vetted address pinned for the check, fail closed; TURN peers
vetted alike; `dns` answers that are not global withheld; the helper held to
the catalogue's endpoints when the operator gives one; UDP caps."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from probe.catalogue import ENDPOINT_ADAPTER
from probe.core.auth import sign_request
from probe.core.signing import ProbeKey
from probe.run import helper
from tests.collector.harness import Collector
from tests.conftest import ROOT, in_ci
from tests.support.dns_server import DnsServer
from tests.support.hostile import silent, udp_responder

PATH = "/api/v1/control"


async def ask(collector: Collector, key: ProbeKey, endpoints: list[dict[str, Any]]
              ) -> list[Any]:
    async with httpx.AsyncClient(base_url=collector.url, timeout=30) as http:
        await http.post("/api/v1/probes", json={"public_key": key.public_b64})
        body = json.dumps({"endpoints": endpoints}).encode()
        response = await http.post(PATH, content=body, headers={
            "Content-Type": "application/json", **sign_request(key, "POST", PATH, body)})
    assert response.status_code == 200, response.text
    return list(response.json()["results"])


def start(tmp: Path, *args: str, env: dict[str, str] | None = None) -> Collector:
    return Collector(tmp / f"c{len(list(tmp.iterdir()))}", None, args,
                     env={**os.environ, **(env or {})}).start()


def test_rebinding_rotation_and_turn_peers_stay_out_of_the_network(tmp_path: Path) -> None:
    """In a namespace of the test's own: a public address first, loopback next
    (rebinding); two records in rotating order; a TURN peer on loopback."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        if in_ci():
            pytest.fail("needs root and unshare(1)")
        pytest.skip("needs root and unshare(1)")
    run = subprocess.run(["unshare", "-n", sys.executable, "-m",
                          "tests.collector.rebinding_scenario", str(tmp_path)],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    outcome = json.loads(run.stdout.strip().splitlines()[-1])
    rebind, rotate, turn = outcome["results"]
    assert rebind["reached"] == ["public"]  # pinned: the vetted address, never the second
    assert rebind["result"]["status"] == "ok"
    assert outcome["queries"].count("rebind.test") == 1  # resolved once
    assert (rotate["result"], rotate["reached"]) == (None, [])  # one bad record: refused
    assert turn["result"] is None and outcome["turn_datagrams"] == 0  # peer vetted first


async def test_failed_lookup_is_refused(tmp_path: Path) -> None:
    """The first lookup fails, a second would give loopback: fail closed."""
    responder_seen: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        responder_seen.append("connected")
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with DnsServer({"flaky.test": ["127.0.0.1"]}, lie_first=1) as dns:
        collector = start(tmp_path, "--resolver", f"127.0.0.1:{dns.port}")
        try:
            results = await ask(collector, ProbeKey.generate(), [
                {"check": "tcp", "host": "flaky.test", "port": port, "role": "call"}])
        finally:
            collector.stop()
    server.close()
    assert results == [None] and responder_seen == []


DENIED_LITERALS = ["64:ff9b::7f00:1", "64:ff9b:1::a00:1", "2002:7f00:1::1", "::7f00:1",
                   "::ffff:127.0.0.1", "2001:0:7f00:1::1", "fd00::1", "fec0::1", "ff02::1",
                   "224.0.1.1", "100.64.0.1", "198.18.0.1", "192.0.2.1", "169.254.1.1",
                   "0.1.2.3", "240.0.0.1"]


@pytest.mark.parametrize("address", DENIED_LITERALS)
def test_deny_list(address: str) -> None:
    assert helper.Policy().may_reach(address) is False
    assert helper.Policy(allow_private=True).may_reach(address) is True


def test_operator_prefixes_and_global_addresses() -> None:
    from probe.core.addresses import parse_prefixes

    policy = helper.Policy(denied=parse_prefixes("93.184.216.0/24, 2606:2800::/32"))
    assert policy.may_reach("93.184.216.34") is False
    assert policy.may_reach("2606:2800:220:1::1") is False
    assert policy.may_reach("1.1.1.1") and policy.may_reach("2606:4700::1111")
    with pytest.raises(ValueError, match="not an address prefix"):
        parse_prefixes("10.0.0.0/8, intranet")


async def test_translated_and_multicast_targets_get_no_answer(tmp_path: Path) -> None:
    collector = start(tmp_path)
    try:
        endpoints: list[dict[str, Any]] = [
            {"check": "tcp", "host": a, "port": 443, "role": "call"}
            for a in DENIED_LITERALS if ":" in a or not a.startswith("224")]
        endpoints.append({"check": "stun", "host": "224.0.1.1", "port": 3478, "role": "call"})
        results = await ask(collector, ProbeKey.generate(), endpoints)
    finally:
        collector.stop()
    assert results == [None] * len(endpoints)


async def test_dns_answers_that_are_not_global_are_withheld(tmp_path: Path) -> None:
    zone = {"mixed.test": ["10.1.2.3", "93.184.216.34"], "inside.test": ["192.168.1.9"]}
    async with DnsServer(zone) as dns:
        collector = start(tmp_path, "--resolver", f"127.0.0.1:{dns.port}")
        try:
            mixed, inside = await ask(collector, ProbeKey.generate(), [
                {"check": "dns", "host": "mixed.test", "role": "call"},
                {"check": "dns", "host": "inside.test", "role": "call"}])
        finally:
            collector.stop()
    assert mixed["evidence"]["answers"] == ["93.184.216.34"]
    assert mixed["evidence"]["withheld"] == 1
    assert inside["evidence"]["answers"] == [] and "192.168.1.9" not in json.dumps(inside)


async def test_helper_held_to_the_catalogue(tmp_path: Path) -> None:
    async with udp_responder(silent) as listed, udp_responder(silent) as other:
        catalogue = tmp_path / "catalogue.yaml"
        catalogue.write_text(
            "version: 1\nservices:\n  - id: lab\n    name: Lab\n    endpoints:\n"
            f"      - {{check: sip, host: 127.0.0.1, port: {listed.port}, role: call}}\n")
        collector = start(tmp_path, "--control-allow-private", "--catalogue", str(catalogue))
        try:
            results = await ask(collector, ProbeKey.generate(), [
                {"check": "sip", "host": "127.0.0.1", "port": listed.port, "role": "call"},
                {"check": "sip", "host": "127.0.0.1", "port": other.port, "role": "call"},
                {"check": "tcp", "host": "127.0.0.1", "port": listed.port, "role": "call"}])
        finally:
            collector.stop()
        # helper mode: a request and at most two retransmissions (no 4x amplification)
        assert 1 <= len(listed.requests) <= helper.MAX_SENDS
        assert other.requests == []
    assert results[0] is not None and results[1:] == [None, None]


def test_catalogue_fields_are_bounded() -> None:
    from pydantic import ValidationError

    for endpoint in ({"check": "sip", "host": "a.example", "uri": "sip:" + "a" * 32_000,
                      "role": "call"},
                     {"check": "turn", "host": "a.example", "username": "u" * 5000,
                      "role": "call"},
                     {"check": "tls", "host": "a.example", "sni": "s" * 300, "role": "call"},
                     {"check": "tcp", "host": "a.example", "port": 1, "role": "call",
                      "label": "l" * 1000}):
        with pytest.raises(ValidationError):
            ENDPOINT_ADAPTER.validate_python(endpoint)
        assert helper.parse_endpoint(endpoint) is None


async def test_pinned_context_connects_to_the_pinned_address_only() -> None:
    """The seam itself: a check given `pinned` never resolves, and refuses a
    target it was not given."""
    from probe.checks import tcp
    from probe.checks.base import Context, Status
    from tests.support.tcp_servers import tcp_server

    async with tcp_server() as port:
        endpoint = ENDPOINT_ADAPTER.validate_python(
            {"check": "tcp", "host": "nowhere.invalid", "port": port, "role": "call"})
        pinned = await tcp.run(endpoint, Context(timeout=2, pinned={
            "nowhere.invalid": "127.0.0.1"}))
        refused = await tcp.run(endpoint, Context(timeout=2, pinned={}))
    assert pinned.status is Status.OK and pinned.evidence["address"] == "127.0.0.1"
    assert refused.status is Status.FAILED and "not a vetted target" in refused.evidence["error"]
