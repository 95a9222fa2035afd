"""The turn check against a real coturn on loopback: the 401 challenge, a full
authenticated allocation with data relayed to a UDP echo peer, refusals, closed
and silent ports, and forgeries."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from probe.catalogue import ENDPOINT_ADAPTER
from probe.checks import turn as turn_check
from probe.checks.base import Context, Status
from probe.core.failures import Failure
from probe.core.record import Blocking
from probe.verdict.methods import suspected
from tests.support import hostile
from tests.support.tcp_servers import closed_port
from tests.support.voip import (
    SERVER_NAME,
    TURN_PASSWORD,
    TURN_USER,
    Servers,
    coturn_server,
    udp_echo,
)

STEPS = ["allocate", "allocate_auth", "permission", "send", "channel_bind", "channel_data",
         "refresh"]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    with coturn_server(tmp_path_factory.mktemp("vwv-turn")) as found:
        yield found


def endpoint(port: int, transport: str = "udp", **extra: Any) -> Any:
    return ENDPOINT_ADAPTER.validate_python({"check": "turn", "host": "127.0.0.1", "port": port,
                                             "transport": transport, "role": "call",
                                             "sni": SERVER_NAME, **extra})


def credentials(password: str = TURN_PASSWORD, **extra: Any) -> dict[str, Any]:
    return {"username": TURN_USER, "password": password, **extra}


def ctx(servers: Servers | None = None, timeout: float = 2.0) -> Context:
    if servers is None:
        return Context(timeout=timeout)
    return Context(timeout=timeout, ssl_context=servers.ca.client_context)


def port_of(servers: Servers, transport: str) -> int:
    assert servers.coturn is not None
    port = servers.coturn.tls_port if transport == "tls" else servers.coturn.port
    assert port is not None
    return port


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_challenge_proves_a_turn_server(servers: Servers, transport: str) -> None:
    obs = await turn_check.run(endpoint(port_of(servers, transport), transport), ctx(servers))
    assert obs.status is Status.OK, obs
    assert obs.evidence["auth"] == "challenge"
    assert obs.evidence["realm"] == "voipwatch.test"
    assert obs.evidence["steps"] == [{"step": "allocate", "attempts": 1, "result": "error",
                                      "error_code": 401, "ms": obs.evidence["steps"][0]["ms"]}]


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_allocation_relays_data_to_the_peer_and_back(servers: Servers,
                                                           transport: str) -> None:
    async with udp_echo() as peer:
        obs = await turn_check.run(
            endpoint(port_of(servers, transport), transport,
                     **credentials(peer=f"127.0.0.1:{peer}")), ctx(servers))
    assert obs.status is Status.OK, obs
    evidence = obs.evidence
    assert [s["step"] for s in evidence["steps"]] == STEPS
    assert all(s["result"] == "ok" for s in evidence["steps"][1:])
    assert evidence["auth"] == "long_term" and evidence["lifetime"] > 0
    assert evidence["relay"]["send_ms"] >= 0 and evidence["relay"]["channel_ms"] >= 0
    assert evidence["relayed"] == {"kind": "loopback", "family": 4, "same_as_server": True}
    assert evidence["mapped"]["nat"] is False
    assert obs.bytes_sent > 200 and obs.bytes_received > 200


async def test_allocation_without_a_peer_stops_at_the_permission(servers: Servers) -> None:
    obs = await turn_check.run(endpoint(port_of(servers, "udp"), **credentials()), ctx(servers))
    assert obs.status is Status.OK
    assert [s["step"] for s in obs.evidence["steps"]] == [
        "allocate", "allocate_auth", "permission", "refresh"]
    assert "relay" not in obs.evidence


async def test_rejected_credentials_are_not_blocking(servers: Servers) -> None:
    obs = await turn_check.run(endpoint(port_of(servers, "tcp"), "tcp",
                                        **credentials("wrong")), ctx(servers))
    assert (obs.failure, suspected(obs)) == (Failure.ERROR_RESPONSE, None)
    assert (obs.evidence["phase"], obs.evidence["error_code"]) == ("allocate_auth", 401)


async def test_silent_peer_is_a_relay_failure_and_the_allocation_is_freed(
        servers: Servers) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        peer = f"127.0.0.1:{silent.getsockname()[1]}"
        obs = await turn_check.run(endpoint(port_of(servers, "udp"), **credentials(peer=peer)),
                                   ctx(servers, timeout=0.8))
    finally:
        silent.close()
    assert (obs.failure, suspected(obs)) == (Failure.GENERIC_TIMEOUT, Blocking.TURN_RELAY)
    assert obs.evidence["phase"] == "send"
    steps = {s["step"]: s for s in obs.evidence["steps"]}
    assert steps["send"]["attempts"] >= 2  # relayed data is resent
    assert steps["refresh"]["result"] == "ok"


async def test_closed_ports() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    obs = await turn_check.run(endpoint(port), ctx())
    assert (obs.failure, suspected(obs)) == (Failure.PORT_UNREACHABLE, Blocking.ICMP_UNREACHABLE)
    obs = await turn_check.run(endpoint(closed_port(), "tcp"), ctx())
    assert (suspected(obs), obs.evidence["phase"]) == (Blocking.TCP_RESET, "connect")


async def test_silence_is_no_response() -> None:
    async with hostile.udp_responder(hostile.silent) as server:
        obs = await turn_check.run(endpoint(server.port, **credentials()), ctx(timeout=0.7))
    assert (obs.failure, suspected(obs)) == (Failure.GENERIC_TIMEOUT, Blocking.TURN_NO_RESPONSE)
    assert obs.evidence["phase"] == "allocate"
    assert obs.evidence["steps"][0]["attempts"] == len(server.requests) == 2


async def test_challenge_without_nonce_is_forged() -> None:
    async with hostile.udp_responder(hostile.turn_401_without_nonce) as server:
        obs = await turn_check.run(endpoint(server.port), ctx())
    assert (obs.failure, suspected(obs)) == (Failure.UNEXPECTED_RESPONSE, Blocking.TURN_FORGED)


async def test_allocation_without_valid_integrity_is_forged() -> None:
    async with hostile.tcp_responder(hostile.turn_unsigned_allocation) as server:
        obs = await turn_check.run(endpoint(server.port, "tcp", **credentials()), ctx())
    assert (obs.failure, suspected(obs)) == (Failure.FORGED_RESPONSE, Blocking.TURN_FORGED)
    assert obs.evidence["phase"] == "allocate_auth"


@pytest.mark.parametrize(("transport", "behaviour", "failure"), [
    ("udp", hostile.stun_wrong_txid, Failure.FORGED_RESPONSE),
    ("udp", hostile.garbage, Failure.PROTOCOL_ERROR),
    ("tcp", hostile.garbage, Failure.PROTOCOL_ERROR),
    ("tcp", hostile.stun_truncated, Failure.PROTOCOL_ERROR),
])
async def test_hostile_answers_are_forged(transport: str, behaviour: Any,
                                          failure: Failure) -> None:
    async with (hostile.udp_responder(behaviour) if transport == "udp"
                else hostile.tcp_responder(behaviour, close_after=True)) as server:
        obs = await turn_check.run(endpoint(server.port, transport), ctx(timeout=0.6))
    assert (obs.status, obs.failure, suspected(obs)) == (Status.FAILED, failure,
                                                       Blocking.TURN_FORGED), obs
    assert obs.evidence["anomaly_count"] >= 1


async def test_reflected_allocate_is_forged() -> None:
    async with hostile.udp_responder(hostile.reflect) as server:
        obs = await turn_check.run(endpoint(server.port), ctx(timeout=0.6))
    assert (obs.failure, suspected(obs)) == (Failure.FORGED_RESPONSE, Blocking.TURN_FORGED)
    assert "with our transaction id" in obs.evidence["anomalies"][0]["detail"]


def test_peer_forms() -> None:
    assert turn_check.parse_peer("192.0.2.7:7") == ("192.0.2.7", 7)
    assert turn_check.parse_peer("[2001:db8::7]:7") == ("2001:db8::7", 7)
    with pytest.raises(ValueError, match="host:port"):
        endpoint(3478, peer="no-port")
