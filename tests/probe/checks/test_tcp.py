"""The tcp check: connect, and tell a RST from a timeout."""

from __future__ import annotations

from typing import Any

from probe.catalogue import ENDPOINT_ADAPTER
from probe.checks import tcp as tcp_check
from probe.checks.base import Context, Status
from probe.core.failures import Failure
from probe.core.record import Blocking
from probe.verdict.methods import suspected
from tests.support.dns_server import DnsServer
from tests.support.tcp_servers import closed_port, full_backlog, tcp_server


def endpoint(host: str, port: int) -> Any:
    return ENDPOINT_ADAPTER.validate_python(
        {"check": "tcp", "host": host, "port": port, "role": "messaging"})


async def test_open_port() -> None:
    async with tcp_server() as port:
        obs = await tcp_check.run(endpoint("127.0.0.1", port), Context(timeout=2))
    assert obs.status is Status.OK
    assert obs.evidence["connect_ms"] >= 0


async def test_reset_is_tcp_reset() -> None:
    obs = await tcp_check.run(endpoint("127.0.0.1", closed_port()), Context(timeout=2))
    assert (obs.status, obs.failure, suspected(obs)) == (
        Status.FAILED, Failure.CONNECTION_RESET, Blocking.TCP_RESET)
    assert "icmp" not in obs.evidence


async def test_dropped_syn_is_tcp_timeout() -> None:
    with full_backlog() as port:
        obs = await tcp_check.run(endpoint("127.0.0.1", port), Context(timeout=1.0))
    assert (obs.failure, suspected(obs)) == (Failure.GENERIC_TIMEOUT, Blocking.TCP_TIMEOUT)
    assert obs.evidence["connect_ms"] >= 900


async def test_name_resolved_through_the_run_resolver() -> None:
    async with DnsServer({"chat.test": ["127.0.0.1"]}) as dns, tcp_server() as port:
        obs = await tcp_check.run(endpoint("chat.test", port),
                                  Context(timeout=2, resolver=dns.address))
    assert obs.status is Status.OK and obs.evidence["address"] == "127.0.0.1"


async def test_unresolvable_name_claims_no_blocking() -> None:
    async with DnsServer({}) as dns:
        obs = await tcp_check.run(endpoint("gone.test", 443),
                                  Context(timeout=2, resolver=dns.address))
    assert obs.status is Status.FAILED
    assert obs.failure is Failure.DNS_NXDOMAIN and suspected(obs) is None
    assert obs.evidence["phase"] == "resolve"
