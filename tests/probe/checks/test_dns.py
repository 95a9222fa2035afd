"""The dns check against a real DNS server on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from probe.catalogue import ENDPOINT_ADAPTER
from probe.checks import dns as dns_check
from probe.checks.base import Context, Observation, Status
from probe.core.failures import Failure
from probe.core.record import Blocking
from probe.verdict.methods import suspected
from tests.support.dns_server import DROP, EMPTY, GARBAGE, NXDOMAIN, REFUSED, SERVFAIL, DnsServer

ZONE = {
    "open.test": ["93.184.216.34"],
    "gone.test": NXDOMAIN,
    "bogon.test": ["10.10.10.10"],
    "loopback.test": ["127.0.0.1"],
    "empty.test": EMPTY,
    "servfail.test": SERVFAIL,
    "refused.test": REFUSED,
    "drop.test": DROP,
    "garbage.test": GARBAGE,
    "v6.test": ["2001:db8::1", "2606:4700::1111"],
}


def endpoint(host: str, qtype: str = "A") -> Any:
    return ENDPOINT_ADAPTER.validate_python(
        {"check": "dns", "host": host, "role": "messaging", "qtype": qtype})


@pytest.fixture
async def server() -> AsyncIterator[DnsServer]:
    async with DnsServer(ZONE) as srv:
        yield srv


async def run(server: DnsServer, host: str, control: Observation | None = None,
              qtype: str = "A", timeout: float = 2.0) -> Observation:
    async def lookup(_endpoint: object) -> Observation | None:
        return control

    ctx = Context(timeout=timeout, resolver=server.address, control=lookup)
    return await dns_check.run(endpoint(host, qtype), ctx)


async def test_correct_answer_is_ok(server: DnsServer) -> None:
    obs = await run(server, "open.test")
    assert obs.status is Status.OK
    assert obs.evidence["answers"] == ["93.184.216.34"]
    assert obs.evidence["rcode"] == "NOERROR"
    assert obs.evidence["rtt_ms"] > 0
    assert obs.evidence["resolver"] == "local"  # a loopback resolver's address is not kept
    assert server.queries == ["open.test"]


@pytest.mark.parametrize("host,failure,blocking", [
    ("gone.test", Failure.DNS_NXDOMAIN, Blocking.DNS_NXDOMAIN),
    ("empty.test", Failure.DNS_NO_ANSWER, Blocking.DNS_EMPTY),
    ("servfail.test", Failure.DNS_SERVFAIL, Blocking.DNS_SERVFAIL),
    ("refused.test", Failure.DNS_REFUSED, Blocking.DNS_REFUSED),
    ("bogon.test", Failure.DNS_BOGON, Blocking.DNS_BOGON),
    ("loopback.test", Failure.DNS_BOGON, Blocking.DNS_BOGON),
])
async def test_tampering_is_recognised(server: DnsServer, host: str, failure: Failure,
                                       blocking: Blocking) -> None:
    obs = await run(server, host)
    assert obs.status is Status.FAILED
    assert (obs.failure, suspected(obs)) == (failure, blocking)


async def test_dropped_query_times_out(server: DnsServer) -> None:
    obs = await run(server, "drop.test", timeout=1.0)
    assert (obs.failure, suspected(obs)) == (Failure.GENERIC_TIMEOUT, Blocking.DNS_TIMEOUT)


async def test_garbage_answer_is_a_failure_not_a_crash(server: DnsServer) -> None:
    obs = await run(server, "garbage.test", timeout=1.0)
    assert obs.status is Status.FAILED
    assert suspected(obs) in (None, Blocking.DNS_TIMEOUT)


async def test_lost_queries_are_retransmitted(server: DnsServer) -> None:
    server.drop_first = 2  # the first two datagrams are lost on the way
    obs = await run(server, "open.test", timeout=3.0)
    assert obs.status is Status.OK
    assert obs.evidence["attempts"] == 3
    assert server.queries == ["open.test"] * 3


async def test_aaaa_answers(server: DnsServer) -> None:
    obs = await run(server, "v6.test", qtype="AAAA")
    assert obs.status is Status.FAILED and suspected(obs) is Blocking.DNS_BOGON  # 2001:db8::/32
    assert obs.evidence["bogons"] == ["2001:db8::1"]


async def test_private_answer_the_control_also_sees_is_not_a_bogon(server: DnsServer) -> None:
    control = Observation.ok(answers=["10.10.10.10"])
    obs = await run(server, "bogon.test", control=control)
    assert obs.status is Status.OK
    assert obs.evidence["consistency"] == "matches_control"


async def test_private_answer_differing_from_the_control_is_a_bogon(server: DnsServer) -> None:
    control = Observation.ok(answers=["10.20.30.40"])
    obs = await run(server, "bogon.test", control=control)
    assert suspected(obs) is Blocking.DNS_BOGON


async def test_unreachable_resolver_port(server: DnsServer) -> None:
    from tests.support.tcp_servers import closed_port

    ctx = Context(timeout=1.0, resolver=("127.0.0.1", closed_port()))
    obs = await dns_check.run(endpoint("open.test"), ctx)
    assert obs.status is Status.FAILED
    assert obs.failure in (Failure.PORT_UNREACHABLE, Failure.GENERIC_TIMEOUT)
