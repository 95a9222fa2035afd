"""`dns`: resolve the endpoint's name through the run's resolver.

Detects NXDOMAIN, empty answers, SERVFAIL/REFUSED, timeouts, bogon answers
(private, loopback, reserved) and answers inconsistent with the control. An
answer that differs from the control's is confirmed with a TLS handshake to it:
a certificate valid for the name means a CDN, not a lie.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from probe.checks.base import Context, Observation, Operation, Status
from probe.core.errors import DnsError
from probe.core.failures import CERT_FAILURES, Failure
from probe.dns.query import query_addresses

NAME = "dns"
VERSION = "1"
DEFAULT_TIMEOUT = 5.0

def is_bogon(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return not ip.is_global or ip.is_multicast


def _resolver_label(resolver: str) -> str:
    """Keep the resolver's address only when it is public (an ISP's or a public
    resolver is evidence; a home router's LAN address is noise)."""
    host = resolver.rsplit(":", 1)[0]
    try:
        return resolver if ipaddress.ip_address(host).is_global else "local"
    except ValueError:
        return "local"


async def run(endpoint: Any, ctx: Context) -> Observation:
    evidence: dict[str, Any] = {"query": endpoint.host, "qtype": endpoint.qtype}
    try:
        answer = await query_addresses(endpoint.host, endpoint.qtype, ctx.resolver, ctx.timeout)
    except DnsError as exc:
        if exc.answer is not None:
            evidence.update(rcode=exc.answer.rcode, rtt_ms=exc.answer.rtt_ms,
                            resolver=_resolver_label(exc.answer.resolver))
        evidence["error"] = str(exc)
        observation = Observation.failed(exc.failure, Operation.DNS_QUERY, **evidence)
        if exc.answer is not None:
            observation.bytes_sent = exc.answer.bytes_sent
            observation.bytes_received = exc.answer.bytes_received
        return observation

    if ctx.reveal is not None:
        _withhold(answer, ctx.reveal, evidence)
    evidence.update(rcode=answer.rcode, answers=answer.addresses, cnames=answer.cnames,
                    rtt_ms=answer.rtt_ms, attempts=answer.attempts,
                    resolver=_resolver_label(answer.resolver))
    judged = _judge(answer.addresses, evidence, await ctx.control(endpoint))
    if judged is not None:
        observation = judged
    else:
        evidence["consistency"] = await _confirm_with_tls(endpoint, answer.addresses[0], ctx)
        observation = (
            Observation.failed(Failure.DNS_MISMATCH, Operation.DNS_ANSWER, **evidence)
            if evidence["consistency"] == "tls_invalid" else Observation.ok(**evidence)
        )
    observation.bytes_sent, observation.bytes_received = answer.bytes_sent, answer.bytes_received
    return observation


def _withhold(answer: Any, reveal: Any, evidence: dict[str, Any]) -> None:
    """The test helper repeats only the answers it may reveal: a name the
    probe chose must not map the collector's own network (nor its CNAMEs)."""
    kept = [a for a in answer.addresses if reveal(a)]
    if len(kept) < len(answer.addresses):
        evidence["withheld"] = len(answer.addresses) - len(kept)
        answer.addresses, answer.cnames = kept, []


def _judge(addresses: list[str], evidence: dict[str, Any],
           control: Observation | None) -> Observation | None:
    """The observation for these answers, or None when they differ from the
    control's and only a TLS handshake can tell a CDN from a lie."""
    if not addresses:
        return Observation.failed(Failure.DNS_NO_ANSWER, Operation.DNS_ANSWER, **evidence)

    control_answers: set[str] = set()
    if control is not None and control.status is Status.OK:
        control_answers = set(control.evidence.get("answers") or ())

    bogons = [a for a in addresses if is_bogon(a) and a not in control_answers]
    if bogons:
        evidence["bogons"] = bogons
        return Observation.failed(Failure.DNS_BOGON, Operation.DNS_ANSWER, **evidence)
    if control_answers and not control_answers.intersection(addresses):
        return None
    if control_answers:
        evidence["consistency"] = "matches_control"
    return Observation.ok(**evidence)


async def _confirm_with_tls(endpoint: Any, address: str, ctx: Context) -> str:
    return await tls_consistency(endpoint.host, address, endpoint.port, ctx)


async def tls_consistency(host: str, address: str, port: int, ctx: Context) -> str:
    """`tls_valid`: the address serves a certificate valid for the name (a CDN
    answering differently per region); `tls_invalid`: it serves one that is not;
    `unconfirmed`: no TLS answer, so nothing can be said either way."""
    from probe.checks.tls import handshake

    result = await handshake(address, port, host, ctx, post_wait=0)
    if result.status is Status.OK:
        return "tls_valid"
    if result.failure in CERT_FAILURES:
        return "tls_invalid"
    return "unconfirmed"
