"""The `throttle` check against a real collector's reflector on loopback: a
clean path is `ok` within the time and data targets, over UDP and TCP; every
way the reflector can be unusable is `unmeasurable` with the reason; the
budget is respected. (Differentiated paths need the lab: tests/lab.)"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from probe.catalogue import ENDPOINT_ADAPTER
from probe.checks.base import Budget, Context, ControlState, Status
from probe.checks.throttle import check as throttle
from probe.core.failures import Failure
from probe.core.signing import ProbeKey
from probe.verdict.methods import suspected
from probe.wire import profiles
from tests.collector.harness import Collector
from tests.conftest import probe_command

PER_SERVICE_BYTES = 1_000_000
PER_SERVICE_SECONDS = 10.0


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    with Collector(tmp_path_factory.mktemp("throttle")) as running:
        yield running


@pytest.fixture
def key(collector: Collector) -> ProbeKey:
    key = ProbeKey.generate()
    response = httpx.post(collector.url + "/api/v1/probes", json={"public_key": key.public_b64})
    assert response.status_code == 201
    return key


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def endpoint(url: str, port: int, transport: str = "udp", profile: str = "whatsapp") -> Any:
    return ENDPOINT_ADAPTER.validate_python({"check": "throttle", "url": url, "port": port,
                                             "transport": transport, "profile": profile,
                                             "role": "call"})


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_clean_path_is_ok_within_targets(collector: Collector, key: ProbeKey,
                                               transport: str) -> None:
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    ctx = Context(timeout=5, signer=key, collector=collector.url)
    observation = await throttle.run(endpoint(collector.url, free_port(kind), transport), ctx)
    evidence = observation.evidence
    assert observation.status is Status.OK, evidence
    assert observation.control is ControlState.OK and suspected(observation) is None
    assert evidence["decision"]["outcome"] == "ok"
    assert evidence["seconds"] <= PER_SERVICE_SECONDS
    used = observation.bytes_sent + observation.bytes_received
    assert 0.9 * throttle.round_bytes(profiles.PROFILES["whatsapp"], profiles.MEDIA_SECONDS) \
        < used <= PER_SERVICE_BYTES  # one whole round, not a shortened one
    assert evidence["offered_kbit"] == pytest.approx(254.8, abs=1)
    assert not evidence["low_rate"]
    for direction in ("up", "rt"):
        for flow in ("voip", "control"):
            assert evidence["kbit"][direction][flow] == pytest.approx(254.8, rel=0.1)
    first = evidence["rounds"][0]
    assert len(first["up"]["voip"]["slices_kbit"]) == round(profiles.MEDIA_SECONDS / 0.1)
    assert first["flows"]["voip"]["sent"] == first["flows"]["control"]["sent"]
    if transport == "udp":
        assert first["flows"]["voip"]["stun_echoed"] == "3/3"
    json.dumps(evidence)  # goes into a signed record as is


async def test_placeholder_url_means_the_run_collector(collector: Collector,
                                                       key: ProbeKey) -> None:
    placeholder = endpoint("https://collector.example.org", free_port())
    ctx = Context(timeout=5, signer=key, collector=collector.url)
    observation = await throttle.run(placeholder, ctx)
    assert observation.status is Status.OK
    assert observation.evidence["reflector_is_run_collector"] is True
    alone = await throttle.run(placeholder, Context(timeout=5, signer=key))
    assert alone.status is Status.UNMEASURABLE and alone.failure is Failure.NOT_RUN
    assert "placeholder" in alone.evidence["error"]
    assert alone.bytes_sent == 0


async def test_budget_is_respected(collector: Collector, key: ProbeKey) -> None:
    ep = endpoint(collector.url, free_port())
    spent = Budget(1_000_000)
    spent.charge(950_000)
    observation = await throttle.run(ep, Context(timeout=5, signer=key, budget=spent))
    assert observation.status is Status.UNMEASURABLE
    assert observation.failure is Failure.BUDGET_EXHAUSTED
    assert observation.bytes_sent == observation.bytes_received == 0
    tight = Budget(260_000)  # enough for a shorter round, not for a full one
    observation = await throttle.run(ep, Context(timeout=5, signer=key, budget=tight))
    assert observation.status is Status.OK
    assert observation.evidence["media_s"] < profiles.MEDIA_SECONDS
    assert observation.bytes_sent + observation.bytes_received <= 260_000


async def test_unusable_reflectors_are_unmeasurable(collector: Collector,
                                                   key: ProbeKey) -> None:
    ctx = Context(timeout=3, signer=key)
    closed = f"http://127.0.0.1:{free_port(socket.SOCK_STREAM)}"
    observation = await throttle.run(endpoint(closed, free_port()), ctx)
    assert observation.status is Status.UNMEASURABLE
    # the connection is opened like a check's (probe.net.http): a RST answering the SYN
    assert observation.failure is Failure.CONNECTION_RESET
    assert "reflector unreachable" in observation.evidence["error"]

    stranger = Context(timeout=3, signer=ProbeKey.generate())
    observation = await throttle.run(endpoint(collector.url, free_port()), stranger)
    assert observation.status is Status.UNMEASURABLE
    assert observation.failure is Failure.ERROR_RESPONSE
    assert "HTTP 401" in observation.evidence["error"]

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        observation = await throttle.run(endpoint(collector.url, busy.getsockname()[1]), ctx)
    assert observation.status is Status.UNMEASURABLE
    assert "port_unavailable" in observation.evidence["error"]

    keyless = await throttle.run(endpoint(collector.url, free_port()), Context(timeout=3))
    assert keyless.status is Status.UNMEASURABLE and "registered" in keyless.evidence["error"]


def test_a_pass_records_signed_throttle_measurements(collector: Collector,
                                                     tmp_path: Path) -> None:
    """`voipwatch-probe run` with a throttle endpoint: the record is signed, `open`,
    with its evidence and bytes, and `verify` accepts it."""
    subprocess.run([*probe_command(), "register", "--collector", collector.url], check=True,
                   capture_output=True, timeout=60)
    catalogue = tmp_path / "catalogue.yaml"
    catalogue.write_text(
        "version: 1\nservices:\n  - id: whatsapp\n    name: WhatsApp\n    endpoints:\n"
        f"      - {{check: throttle, url: 'https://collector.example.org', "
        f"port: {free_port()}, transport: udp, profile: whatsapp, role: call}}\n")
    output = tmp_path / "out.jsonl"
    result = subprocess.run(
        [*probe_command(), "run", "--catalogue", str(catalogue), "--collector", collector.url,
         "--no-upload", "--json", "--output", str(output)],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    (record,) = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert record["endpoint"] == {"check": "throttle", "host": "collector.example.org",
                                  "port": record["endpoint"]["port"], "transport": "udp",
                                  "role": "call", "url": "https://collector.example.org",
                                  "profile": "whatsapp"}
    assert record["verdict"] == "open" and record["blocking"] is None
    evidence = record["evidence"]
    assert evidence["rule"] == "works" and evidence["control"] == {"state": "ok"}
    assert 0 < evidence["bytes_sent"] + evidence["bytes_received"] <= PER_SERVICE_BYTES
    verify = subprocess.run([*probe_command(), "verify", str(output)], capture_output=True,
                            text=True, timeout=60)
    assert verify.returncode == 0, verify.stdout + verify.stderr
