"""The stun check against a real coturn on loopback (UDP, TCP, TLS), closed and
silent ports, and hostile responders."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from probe.catalogue import ENDPOINT_ADAPTER
from probe.checks import stun as stun_check
from probe.checks.base import Context, Status
from probe.core.failures import Failure
from probe.core.record import Blocking
from probe.net.flow import retransmit_offsets
from probe.verdict.methods import suspected
from probe.wire import stun as stunmsg
from tests.support import hostile
from tests.support.tcp_servers import closed_port, full_backlog, tcp_server
from tests.support.voip import SERVER_NAME, Servers, coturn_server


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    with coturn_server(tmp_path_factory.mktemp("vwv-stun")) as found:
        yield found


def endpoint(port: int, transport: str = "udp", **extra: Any) -> Any:
    return ENDPOINT_ADAPTER.validate_python({"check": "stun", "host": "127.0.0.1", "port": port,
                                             "transport": transport, "role": "call", **extra})


def ctx(servers: Servers | None = None, timeout: float = 2.0) -> Context:
    if servers is None:
        return Context(timeout=timeout)
    return Context(timeout=timeout, ssl_context=servers.ca.client_context)


def closed_udp_port() -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_coturn_answers_on_every_transport(servers: Servers, transport: str) -> None:
    assert servers.coturn is not None
    port = servers.coturn.tls_port if transport == "tls" else servers.coturn.port
    assert port is not None
    obs = await stun_check.run(endpoint(port, transport, sni=SERVER_NAME), ctx(servers))
    assert obs.status is Status.OK, obs
    evidence = obs.evidence
    assert evidence["mapped"] == {"nat": False, "kind": "loopback", "family": 4,
                                  "port_preserved": True}
    assert evidence["fingerprint"] is True and evidence["software"].startswith("Coturn")
    assert len(evidence["attempts"]) == 1 and evidence["attempts"][0]["rtt_ms"] >= 0
    assert "127.0.0.1" not in str(evidence["mapped"])  # never the mapped address itself
    assert obs.bytes_sent > 20 and obs.bytes_received > 20
    if transport == "tls":
        assert evidence["sni"] == SERVER_NAME and evidence["tls_version"].startswith("TLS")


async def test_untrusted_certificate_is_tls_invalid_cert(servers: Servers) -> None:
    assert servers.coturn is not None and servers.coturn.tls_port is not None
    obs = await stun_check.run(endpoint(servers.coturn.tls_port, "tls", sni=SERVER_NAME),
                               Context(timeout=2))  # the system store: the test CA unknown
    assert (obs.failure, suspected(obs)) == (Failure.SSL_UNKNOWN_AUTHORITY,
                                           Blocking.TLS_INVALID_CERT)
    assert obs.evidence["phase"] == "handshake"


async def test_closed_udp_port_is_icmp_unreachable() -> None:
    obs = await stun_check.run(endpoint(closed_udp_port()), ctx())
    assert (obs.failure, suspected(obs)) == (Failure.PORT_UNREACHABLE, Blocking.ICMP_UNREACHABLE)
    assert obs.evidence["icmp"] == {"type": 3, "code": 3, "from_target": True}
    assert len(obs.evidence["attempts"]) == 1  # no point retrying a port that refused


@pytest.mark.parametrize("transport", ["tcp", "tls"])
async def test_closed_tcp_port_is_reset(transport: str) -> None:
    obs = await stun_check.run(endpoint(closed_port(), transport), ctx())
    assert (suspected(obs), obs.evidence["phase"]) == (Blocking.TCP_RESET, "connect")


async def test_dropped_syn_is_tcp_timeout() -> None:
    with full_backlog() as port:
        obs = await stun_check.run(endpoint(port, "tcp"), ctx(timeout=0.6))
    assert (obs.failure, suspected(obs)) == (Failure.GENERIC_TIMEOUT, Blocking.TCP_TIMEOUT)


async def test_silence_is_no_response_after_rfc_retransmissions() -> None:
    async with hostile.udp_responder(hostile.silent) as server:
        obs = await stun_check.run(endpoint(server.port), ctx(timeout=1.7))
    assert (obs.failure, suspected(obs)) == (Failure.GENERIC_TIMEOUT, Blocking.STUN_NO_RESPONSE)
    sends = [a["sent_ms"] for a in obs.evidence["attempts"]]
    assert len(sends) == 3 == len(server.requests)  # at 0, 500 and 1500 ms
    assert sends[1] == pytest.approx(500, abs=60) and sends[2] == pytest.approx(1500, abs=80)
    assert all("rtt_ms" not in a for a in obs.evidence["attempts"])
    # each attempt is its own transaction, so a late answer says which one got through
    assert len({stunmsg.parse(r).transaction_id for r in server.requests}) == 3


async def test_rtt_is_recorded_for_the_attempt_that_got_through() -> None:
    async with hostile.udp_responder(hostile.stun_answer_nth(2)) as server:
        obs = await stun_check.run(endpoint(server.port), ctx(timeout=2))
    assert obs.status is Status.OK
    first, second = obs.evidence["attempts"]
    assert "rtt_ms" not in first and 0 <= second["rtt_ms"] < 100
    assert obs.evidence["rtt_ms"] == second["rtt_ms"]


async def test_silent_tcp_server_is_no_response() -> None:
    async with tcp_server() as port:
        obs = await stun_check.run(endpoint(port, "tcp"), ctx(timeout=0.6))
    assert (suspected(obs), obs.evidence["phase"]) == (Blocking.STUN_NO_RESPONSE, "request")


async def test_reset_after_the_request_is_tcp_reset() -> None:
    async with tcp_server(mode="reset_on_data") as port:
        obs = await stun_check.run(endpoint(port, "tcp"), ctx())
    assert (obs.failure, suspected(obs)) == (Failure.CONNECTION_RESET, Blocking.TCP_RESET)
    assert obs.evidence["phase"] == "request"


@pytest.mark.parametrize(("behaviour", "failure"), [
    (hostile.stun_wrong_txid, Failure.FORGED_RESPONSE),
    (hostile.stun_bad_cookie, Failure.FORGED_RESPONSE),
    (hostile.stun_truncated, Failure.PROTOCOL_ERROR),
    (hostile.garbage, Failure.PROTOCOL_ERROR),
])
async def test_hostile_udp_answers_are_forged(behaviour: Any, failure: Failure) -> None:
    async with hostile.udp_responder(behaviour) as server:
        obs = await stun_check.run(endpoint(server.port), ctx(timeout=0.6))
    assert (obs.status, obs.failure, suspected(obs)) == (Status.FAILED, failure,
                                                       Blocking.STUN_FORGED)
    assert obs.evidence["anomaly_count"] == len(server.requests) >= 2
    assert obs.evidence["anomalies"][0]["detail"]


async def test_reflected_request_is_unexpected() -> None:
    async with hostile.udp_responder(hostile.reflect) as server:
        obs = await stun_check.run(endpoint(server.port), ctx())
    assert (obs.failure, suspected(obs)) == (Failure.UNEXPECTED_RESPONSE, Blocking.STUN_FORGED)
    assert obs.evidence["unexpected"] == "binding request"


@pytest.mark.parametrize("mapped", [("0.0.0.0", 4000), ("224.0.0.9", 4000),
                                    ("127.0.0.1", 0)])
async def test_impossible_mapped_address_is_forged(mapped: tuple[str, int]) -> None:
    async with hostile.udp_responder(hostile.stun_mapped(mapped)) as server:
        obs = await stun_check.run(endpoint(server.port), ctx())
    assert (obs.failure, suspected(obs)) == (Failure.FORGED_RESPONSE, Blocking.STUN_FORGED)
    assert obs.evidence["implausible"]
    assert mapped[0] not in str({k: v for k, v in obs.evidence.items() if k != "address"})


async def test_injected_answer_does_not_hide_the_real_one() -> None:
    async with hostile.udp_responder(hostile.stun_forged_then_real) as server:
        obs = await stun_check.run(endpoint(server.port), ctx())
    assert obs.status is Status.OK
    assert obs.evidence["anomaly_count"] == 1
    assert obs.evidence["mapped"]["nat"] is True  # the responder maps us to port 40000


async def test_garbage_on_tcp_ends_at_once() -> None:
    async with hostile.tcp_responder(hostile.garbage) as server:
        obs = await stun_check.run(endpoint(server.port, "tcp"), ctx(timeout=3))
    assert (obs.failure, suspected(obs)) == (Failure.PROTOCOL_ERROR, Blocking.STUN_FORGED)
    assert obs.evidence["attempts"][0]["sent_ms"] < 100
    assert sum(1 for _ in obs.evidence["anomalies"]) == 1


async def test_wrong_transaction_id_on_tcp() -> None:
    async with hostile.tcp_responder(hostile.stun_wrong_txid) as server:
        obs = await stun_check.run(endpoint(server.port, "tcp"), ctx(timeout=0.5))
    assert (obs.failure, suspected(obs)) == (Failure.FORGED_RESPONSE, Blocking.STUN_FORGED)


def test_retransmission_schedule_follows_rfc_8489() -> None:
    assert retransmit_offsets(5.0) == [0.0, 0.5, 1.5, 3.5]
    assert retransmit_offsets(100.0) == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]  # Rc = 7
    assert retransmit_offsets(0.1) == [0.0]


# public addresses as plain numbers (no traffic): documentation ranges are not global
@pytest.mark.parametrize(("mapped", "local", "server", "plausible"), [
    (("93.184.216.34", 4000), ("192.168.1.2", 5000), "1.1.1.1", True),  # home NAT
    (("100.64.1.2", 4000), ("10.0.0.2", 5000), "1.1.1.1", True),  # behind a CGN
    (("10.1.1.1", 4000), ("192.168.1.2", 5000), "1.1.1.1", True),  # odd, but possible
    (("10.1.1.1", 4000), ("8.8.4.4", 5000), "1.1.1.1", False),  # public us, private map
    (("127.0.0.1", 4000), ("192.168.1.2", 5000), "1.1.1.1", False),
    (("127.0.0.1", 4000), ("127.0.0.1", 5000), "127.0.0.1", True),
    (("0.0.0.0", 4000), ("192.168.1.2", 5000), "1.1.1.1", False),
    (("93.184.216.34", 0), ("192.168.1.2", 5000), "1.1.1.1", False),
])
def test_mapped_address_plausibility(mapped: tuple[str, int], local: tuple[str, int],
                                     server: str, plausible: bool) -> None:
    assert (stun_check.implausible_mapping(mapped, local, server) is None) is plausible


def test_mapped_evidence_keeps_no_address() -> None:
    facts = stun_check.mapped_evidence(("93.184.216.34", 4000), ("192.168.1.2", 4000))
    assert facts == {"nat": True, "kind": "global", "family": 4, "port_preserved": True}
    assert stun_check.mapped_evidence(("100.64.0.9", 1), ("10.0.0.1", 2))["kind"] == "shared"


def test_stunmsg_rejects_what_aioice_would_accept() -> None:
    from aioice.stun import Class, Message, Method

    good = bytes(Message(Method.BINDING, Class.RESPONSE,
                         attributes={"XOR-MAPPED-ADDRESS": ("192.0.2.1", 1)}))
    assert stunmsg.parse(good).attributes["XOR-MAPPED-ADDRESS"] == ("192.0.2.1", 1)
    with pytest.raises(stunmsg.BadCookie):
        stunmsg.parse(good[:4] + b"\x00\x00\x00\x00" + good[8:])
    with pytest.raises(ValueError, match="two leading bits"):
        stunmsg.parse(b"\x80" + good[1:])
    # LIFETIME of 2 bytes: aioice raises struct.error, we a ValueError
    bad = good[:2] + (len(good) - 20 + 8).to_bytes(2, "big") + good[4:] + \
        b"\x00\x0d\x00\x02\x00\x01\x00\x00"
    with pytest.raises(ValueError, match="malformed STUN attribute"):
        stunmsg.parse(bad)
    overrun = good[:2] + (len(good) - 20 + 4).to_bytes(2, "big") + good[4:] + b"\x80\x22\x00\x40"
    with pytest.raises(ValueError, match="overruns"):
        stunmsg.parse(overrun)
