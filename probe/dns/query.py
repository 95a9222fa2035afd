"""DNS queries through the run's resolver (dnspython), keeping the raw rcode.

The high-level resolver folds SERVFAIL, REFUSED and timeouts into one
exception; a censorship detector needs each one, so we query directly.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field
from typing import Any

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver

from probe.core.errors import DnsError, Mismatch
from probe.core.failures import Failure, describe
from probe.core.record import Transport
from probe.net.flow import Flow, exchange
from probe.net.sockets import udp_socket

_RCODE_FAILURE = {
    dns.rcode.NXDOMAIN: Failure.DNS_NXDOMAIN,
    dns.rcode.SERVFAIL: Failure.DNS_SERVFAIL,
    dns.rcode.REFUSED: Failure.DNS_REFUSED,
}


@dataclass
class DnsAnswer:
    resolver: str
    rcode: str
    addresses: list[str] = field(default_factory=list)
    cnames: list[str] = field(default_factory=list)
    rtt_ms: float = 0.0
    attempts: int = 1
    bytes_sent: int = 0
    bytes_received: int = 0


def system_nameservers() -> list[tuple[str, int]]:
    try:
        resolver = dns.resolver.Resolver(configure=True)
    except dns.resolver.NoResolverConfiguration as exc:
        raise DnsError(Failure.DNS_RESOLUTION, "no system resolver configured") from exc
    return [(str(ns), resolver.port) for ns in resolver.nameservers][:3]


async def query_addresses(
    name: str, qtype: str, resolver: tuple[str, int] | None, timeout: float
) -> DnsAnswer:
    """Ask the resolver(s) until one answers within `timeout`; NOERROR gives the
    answer, other rcodes and timeouts raise DnsError.

    One socket and one query id per nameserver, the query retransmitted on the
    RFC 8489-style timer the other UDP checks use (0, 0.5, 1.5, 3.5 s...), and an
    answer to any transmission accepted: lossy links lose a datagram or two, and
    a lookup must not fail for that. Several system nameservers share the time."""
    servers = [resolver] if resolver else system_nameservers()
    rdtype = dns.rdatatype.from_text(qtype)
    deadline = time.monotonic() + timeout
    failure, detail, attempts = Failure.GENERIC_TIMEOUT, "", 0
    for index, (host, port) in enumerate(servers):
        share = (deadline - time.monotonic()) / (len(servers) - index)
        if share <= 0:
            break
        query = dns.message.make_query(name, rdtype)

        def match(data: bytes, query: dns.message.Message = query) -> tuple[Any, None]:
            try:
                response = dns.message.from_wire(data, ignore_trailing=True)
            except dns.message.Truncated:
                return "truncated", None
            except dns.exception.DNSException as exc:
                raise ValueError(f"not a DNS message: {type(exc).__name__}") from exc
            if not query.is_response(response):
                raise Mismatch("a DNS message that does not answer our query")
            return response, None

        try:
            flow = Flow(Transport.UDP, host, port, udp_socket(host, port), framer=len)
        except OSError as exc:
            failure, detail = Failure.DNS_RESOLUTION, describe(exc)
            continue
        try:
            outcome = await exchange(flow, query.to_wire(), match, time.monotonic() + share)
        finally:
            flow.close()
        attempts += len(outcome.attempts)
        if outcome.ended == "closed" and outcome.closed is not None:
            failure, detail = outcome.closed.failure, outcome.closed.detail
            continue
        if outcome.reply is None:
            detail = f"no answer from {host}:{port} after {len(outcome.attempts)} queries"
            continue
        response = outcome.reply
        sent, received = flow.traffic()
        if response == "truncated":  # the answer needs TCP (RFC 7766)
            try:
                response = await dns.asyncquery.tcp(
                    query, host, timeout=max(deadline - time.monotonic(), 0.5), port=port)
            except (OSError, dns.exception.DNSException, TimeoutError) as exc:
                failure, detail = Failure.DNS_RESOLUTION, describe(exc)
                continue
        rtt = outcome.evidence().get("rtt_ms", outcome.elapsed_ms)
        return _answer(response, rdtype, f"{host}:{port}", rtt, attempts, (sent, received))
    raise DnsError(failure, detail or f"no answer from {len(servers)} resolver(s)")


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _answer(response: dns.message.Message, rdtype: int, resolver: str, rtt: float,
            attempts: int, traffic: tuple[int, int]) -> DnsAnswer:
    rcode = response.rcode()
    answer = DnsAnswer(resolver=resolver, rcode=dns.rcode.to_text(rcode), rtt_ms=rtt,
                       attempts=attempts, bytes_sent=traffic[0], bytes_received=traffic[1])
    for rrset in response.answer:
        if rrset.rdclass != dns.rdataclass.IN:  # e.g. a forged CH-class "A": no address
            continue
        if rrset.rdtype == rdtype:
            answer.addresses.extend(a for a in (str(r) for r in rrset) if _is_address(a))
        elif rrset.rdtype == dns.rdatatype.CNAME:
            answer.cnames.extend(str(r.target).rstrip(".") for r in rrset)
    if rcode in _RCODE_FAILURE:
        raise DnsError(_RCODE_FAILURE[rcode], f"rcode {answer.rcode}", answer)
    if rcode != dns.rcode.NOERROR:
        raise DnsError(Failure.DNS_RESOLUTION, f"rcode {answer.rcode}", answer)
    return answer
