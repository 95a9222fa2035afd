"""DNS queries through the run's resolver (dnspython), keeping the raw rcode.

The high-level resolver folds SERVFAIL, REFUSED and timeouts into one
exception; a censorship detector needs each one, so we query directly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.resolver

from probe.failures import Failure, describe

_RCODE_FAILURE = {
    dns.rcode.NXDOMAIN: Failure.DNS_NXDOMAIN,
    dns.rcode.SERVFAIL: Failure.DNS_SERVFAIL,
    dns.rcode.REFUSED: Failure.DNS_REFUSED,
}


class DnsError(Exception):
    def __init__(self, failure: Failure, detail: str, answer: DnsAnswer | None = None) -> None:
        super().__init__(detail)
        self.failure = failure
        self.answer = answer


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
    """Ask each nameserver in turn (two tries each) until one answers within `timeout`.

    Returns the answer for NOERROR; raises DnsError for other rcodes and timeouts.
    """
    servers = [resolver] if resolver else system_nameservers()
    rdtype = dns.rdatatype.from_text(qtype)
    deadline = time.monotonic() + timeout
    per_try = max(timeout / (2 * len(servers)), 0.5)
    attempts = 0
    last: Exception | None = None
    for _ in range(2):
        for host, port in servers:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            attempts += 1
            query = dns.message.make_query(name, rdtype)
            start = time.perf_counter()
            try:
                response = await dns.asyncquery.udp(
                    query, host, timeout=min(per_try, remaining), port=port,
                    raise_on_truncation=True,
                )
            except dns.message.Truncated:
                response = await dns.asyncquery.tcp(
                    query, host, timeout=max(deadline - time.monotonic(), 0.1), port=port
                )
            except (dns.exception.Timeout, TimeoutError) as exc:
                last = exc
                continue
            except (OSError, dns.exception.DNSException) as exc:
                last = exc
                continue
            rtt = round((time.perf_counter() - start) * 1000, 3)
            # UDP/IP headers are 28 bytes per datagram
            traffic = (attempts * (len(query.to_wire()) + 28), len(response.to_wire()) + 28)
            return _answer(response, rdtype, f"{host}:{port}", rtt, attempts, traffic)
    if isinstance(last, (dns.exception.Timeout, TimeoutError)) or last is None:
        raise DnsError(Failure.GENERIC_TIMEOUT, f"no answer from {len(servers)} resolver(s)")
    if isinstance(last, ConnectionRefusedError):
        raise DnsError(Failure.PORT_UNREACHABLE, describe(last))
    raise DnsError(Failure.DNS_RESOLUTION, describe(last))


def _answer(response: dns.message.Message, rdtype: int, resolver: str, rtt: float,
            attempts: int, traffic: tuple[int, int]) -> DnsAnswer:
    rcode = response.rcode()
    answer = DnsAnswer(resolver=resolver, rcode=dns.rcode.to_text(rcode), rtt_ms=rtt,
                       attempts=attempts, bytes_sent=traffic[0], bytes_received=traffic[1])
    for rrset in response.answer:
        if rrset.rdtype == rdtype:
            answer.addresses.extend(str(r) for r in rrset)
        elif rrset.rdtype == dns.rdatatype.CNAME:
            answer.cnames.extend(str(r.target).rstrip(".") for r in rrset)
    if rcode in _RCODE_FAILURE:
        raise DnsError(_RCODE_FAILURE[rcode], f"rcode {answer.rcode}", answer)
    if rcode != dns.rcode.NOERROR:
        raise DnsError(Failure.DNS_RESOLUTION, f"rcode {answer.rcode}", answer)
    return answer
