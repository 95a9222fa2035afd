"""The sip check against a real Kamailio on loopback (UDP, TCP, TLS), closed
and silent ports, a rewriting ALG and hostile responders; the SIP parser."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from probe.catalogue import ENDPOINT_ADAPTER
from probe.checks import sip as sip_check
from probe.checks.base import Context, Status
from probe.core.failures import Failure
from probe.core.record import Blocking
from probe.verdict.methods import suspected
from probe.wire import sip as sipmsg
from tests.support import hostile
from tests.support.tcp_servers import closed_port, tcp_server
from tests.support.voip import SERVER_NAME, Servers, kamailio_server


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    with kamailio_server(tmp_path_factory.mktemp("vwv-sip")) as found:
        yield found


def endpoint(port: int, transport: str = "udp", **extra: Any) -> Any:
    return ENDPOINT_ADAPTER.validate_python({"check": "sip", "host": "127.0.0.1", "port": port,
                                             "transport": transport, "role": "call", **extra})


def ctx(servers: Servers | None = None, timeout: float = 2.0) -> Context:
    if servers is None:
        return Context(timeout=timeout)
    return Context(timeout=timeout, ssl_context=servers.ca.client_context)


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_kamailio_answers_options_on_every_transport(servers: Servers,
                                                           transport: str) -> None:
    assert servers.kamailio is not None
    port = servers.kamailio.tls_port if transport == "tls" else servers.kamailio.port
    assert port is not None
    obs = await sip_check.run(endpoint(port, transport, sni=SERVER_NAME), ctx(servers))
    assert obs.status is Status.OK, obs
    evidence = obs.evidence
    assert (evidence["status_code"], evidence["reason"]) == (200, "OK")
    assert evidence["server"].startswith("kamailio")
    assert evidence["alg_detected"] is False and evidence["rewritten"] == []
    assert evidence["nat"] is False  # Kamailio's received/rport match our socket
    assert evidence["attempts"][0]["rtt_ms"] >= 0
    assert obs.bytes_sent > 300 and obs.bytes_received > 200


async def test_untrusted_certificate(servers: Servers) -> None:
    assert servers.kamailio is not None and servers.kamailio.tls_port is not None
    obs = await sip_check.run(endpoint(servers.kamailio.tls_port, "tls", sni=SERVER_NAME),
                              Context(timeout=2))
    assert suspected(obs) is Blocking.TLS_INVALID_CERT


async def test_custom_request_uri(servers: Servers) -> None:
    assert servers.kamailio is not None
    obs = await sip_check.run(endpoint(servers.kamailio.port, uri="sip:ping@voip.test"),
                              ctx(servers))
    assert obs.status is Status.OK and obs.evidence["status_code"] == 200


async def test_closed_ports() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    obs = await sip_check.run(endpoint(port), ctx())
    assert (obs.failure, suspected(obs)) == (Failure.PORT_UNREACHABLE, Blocking.ICMP_UNREACHABLE)
    obs = await sip_check.run(endpoint(closed_port(), "tcp"), ctx())
    assert (obs.failure, suspected(obs)) == (Failure.CONNECTION_RESET, Blocking.TCP_RESET)


async def test_silence_is_no_response_after_timer_a_retransmissions() -> None:
    async with hostile.udp_responder(hostile.silent) as server:
        obs = await sip_check.run(endpoint(server.port), ctx(timeout=1.7))
    assert (obs.failure, suspected(obs)) == (Failure.GENERIC_TIMEOUT, Blocking.SIP_NO_RESPONSE)
    assert len(obs.evidence["attempts"]) == len(server.requests) == 3
    assert len(set(server.requests)) == 1  # retransmissions of one transaction


async def test_reset_after_the_request() -> None:
    async with tcp_server(mode="reset_on_data") as port:
        obs = await sip_check.run(endpoint(port, "tcp"), ctx())
    assert (suspected(obs), obs.evidence["phase"]) == (Blocking.TCP_RESET, "request")


async def test_request_is_well_formed() -> None:
    async with hostile.udp_responder(hostile.sip_status("200 OK")) as server:
        obs = await sip_check.run(endpoint(server.port), ctx())
    assert obs.status is Status.OK
    request = server.requests[0].decode()
    start, *headers = request.split("\r\n\r\n")[0].split("\r\n")
    assert start == f"OPTIONS sip:127.0.0.1:{server.port} SIP/2.0"
    names = {h.split(":")[0] for h in headers}
    assert {"Via", "Max-Forwards", "From", "To", "Call-ID", "CSeq", "Contact",
            "Content-Length"} <= names
    via = sipmsg.parse_via(next(h for h in headers if h.startswith("Via:"))[4:])
    assert via.params["branch"].startswith("z9hG4bK") and "rport" in via.params
    assert request.endswith("Content-Length: 0\r\n\r\n")


@pytest.mark.parametrize("status", ["404 Not Found", "405 Method Not Allowed",
                                    "483 Too Many Hops"])
async def test_any_response_proves_a_sip_server(status: str) -> None:
    async with hostile.udp_responder(hostile.sip_status(status)) as server:
        obs = await sip_check.run(endpoint(server.port), ctx())
    assert obs.status is Status.OK
    assert obs.evidence["status_code"] == int(status[:3])


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_rewriting_alg_is_detected_not_blocking(transport: str) -> None:
    async with (hostile.udp_responder(hostile.sip_alg) if transport == "udp"
                else hostile.tcp_responder(hostile.sip_alg)) as server:
        obs = await sip_check.run(endpoint(server.port, transport), ctx())
    assert obs.status is Status.OK and suspected(obs) is None
    assert obs.evidence["alg_detected"] is True
    assert set(obs.evidence["rewritten"]) == {"via.sent-by", "call-id"}
    assert obs.evidence["nat"] is True
    assert "203.0.113.7" not in str(obs.evidence)  # what it rewrote to is not kept


async def test_provisional_then_final() -> None:
    async with hostile.udp_responder(hostile.sip_provisional_then_final) as server:
        obs = await sip_check.run(endpoint(server.port), ctx())
    assert obs.status is Status.OK
    assert (obs.evidence["provisional"], obs.evidence["status_code"]) == ([100], 200)


@pytest.mark.parametrize(("transport", "behaviour", "failure"), [
    ("udp", hostile.sip_wrong_branch, Failure.FORGED_RESPONSE),
    ("udp", hostile.reflect, Failure.FORGED_RESPONSE),
    ("udp", hostile.garbage, Failure.PROTOCOL_ERROR),
    ("udp", hostile.sip_truncated, Failure.PROTOCOL_ERROR),
    ("tcp", hostile.garbage, Failure.PROTOCOL_ERROR),
    ("tcp", hostile.reflect, Failure.PROTOCOL_ERROR),
    ("tcp", hostile.sip_wrong_branch, Failure.FORGED_RESPONSE),
])
async def test_hostile_answers_are_forged(transport: str, behaviour: Any,
                                          failure: Failure) -> None:
    async with (hostile.udp_responder(behaviour) if transport == "udp"
                else hostile.tcp_responder(behaviour)) as server:
        obs = await sip_check.run(endpoint(server.port, transport), ctx(timeout=0.6))
    assert (obs.status, obs.failure, suspected(obs)) == (Status.FAILED, failure,
                                                       Blocking.SIP_FORGED), obs
    assert obs.evidence["anomalies"][0]["detail"]


async def test_truncated_stream_is_a_protocol_error() -> None:
    async with hostile.tcp_responder(hostile.sip_truncated, close_after=True) as server:
        obs = await sip_check.run(endpoint(server.port, "tcp"), ctx())
    assert (obs.failure, suspected(obs)) == (Failure.PROTOCOL_ERROR, Blocking.SIP_FORGED)


# --- the parser ---------------------------------------------------------------------------

RESPONSE = (b"\r\nSIP/2.0 200 OK\r\n"
            b"v: SIP/2.0/UDP 192.168.1.2:5060;branch=z9hG4bK1;rport=4000;received=1.2.3.4,"
            b" SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bK0\r\n"
            b"Via: SIP/2.0/TLS proxy.example\r\n"
            b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\n\t;tag=2\r\n"
            b"i: abc@192.168.1.2\r\nCSeq: 7 OPTIONS\r\nl: 4\r\n\r\nbodyEXTRA")


def test_parse_response_reads_compact_and_folded_headers() -> None:
    response = sipmsg.parse_response(RESPONSE)
    assert (response.status, response.reason, response.body) == (200, "OK", b"body")
    assert response.get("call-id") == "abc@192.168.1.2"
    assert response.get("to") == "<sip:c@d> ;tag=2"
    assert response.cseq == (7, "OPTIONS")
    assert len(response.vias) == 3
    top = sipmsg.parse_via(response.vias[0])
    assert (top.transport, top.host, top.port) == ("UDP", "192.168.1.2", 5060)
    assert top.params == {"branch": "z9hG4bK1", "rport": "4000", "received": "1.2.3.4"}
    second = sipmsg.parse_via(response.vias[1])
    assert (second.host, second.port) == ("2001:db8::1", 5070)
    assert sipmsg.parse_via(response.vias[2]).port is None


@pytest.mark.parametrize(("data", "message"), [
    (b"HTTP/1.1 200 OK\r\n\r\n", "bad status line"),
    (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\n", "empty line"),
    (b"SIP/2.0 200 OK\r\nCSeq: 1 OPTIONS\r\n\r\n", "without Via or CSeq"),
    (b"SIP/2.0 200 OK\r\nVia: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 9\r\n\r\nab",
     "truncated"),
    (b"SIP/2.0 99 OK\r\n\r\n", "bad status line"),
    (b"SIP/2.0 200 OK\r\nno colon here\r\n\r\n", "malformed SIP header"),
])
def test_parse_response_rejects(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sipmsg.parse_response(data)


def test_stream_framing() -> None:
    one = b"SIP/2.0 200 OK\r\nContent-Length: 3\r\n\r\nabc"
    assert sipmsg.frame_length(one + b"SIP/2.0") == len(one)
    assert sipmsg.frame_length(b"\r\n" + one) == len(one) + 2
    assert sipmsg.frame_length(b"SIP/2") is None
    assert sipmsg.frame_length(one[:20]) is None
    with pytest.raises(ValueError, match="not a SIP response"):
        sipmsg.frame_length(b"HTTP/1.1 400")
    with pytest.raises(ValueError, match="without Content-Length"):
        sipmsg.frame_length(b"SIP/2.0 200 OK\r\n\r\n")
