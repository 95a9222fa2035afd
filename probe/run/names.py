"""Two layers for names: DNS, then the endpoint itself.

A `tcp`, `tls`, `stun`, `turn` or `sip` check resolves its host through the
run's resolver. When that lookup fails (NXDOMAIN, SERVFAIL, REFUSED, no
address, no answer) or gives a forged address, while the control resolved
the name to public addresses, the endpoint is blocked by DNS, and the
check alone would have said nothing (a lookup failure claims no method) or
named a symptom (a timeout to the bogon). So:

1. `tampered` turns the check's observation into the lookup's: failed at
   `dns_query` (the resolver's answer code, or no answer) or `dns_answer`
   (a forged address: private, or disjoint from the control's and serving a
   certificate not valid for the name), which the method table
   (probe.verdict.methods) reads as the DNS method. What the check saw at the
   local address stays in `evidence.name.at_local_address`.
2. `beyond` runs the same check against the control's address (a public one
   only, never a private one), the name kept for SNI and the certificate:
   what the layer itself does at the true address (`evidence.beyond_dns`),
   so "DNS-blocked, but the relay itself is reachable" reads at a glance.

An address disjoint from the control's is no lie by itself (CDNs answer per
region): it is one only when the check failed there and a TLS handshake
shows a certificate not valid for the name, as the `dns` check confirms.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from probe.catalogue import is_ip_literal
from probe.checks.base import Context, Observation, Operation, Status
from probe.checks.dns import is_bogon, tls_consistency
from probe.core.checks import HELPER_CHECKS
from probe.core.failures import CERT_FAILURES, Failure
from probe.core.record import Transport

# a local lookup that failed in one of these ways, where the control resolved the
# name, is the resolver's doing; other failures (no resolver at all) are not
LOOKUP_FAILURES = {
    Failure.DNS_NXDOMAIN: Operation.DNS_QUERY,
    Failure.DNS_SERVFAIL: Operation.DNS_QUERY,
    Failure.DNS_REFUSED: Operation.DNS_QUERY,
    Failure.GENERIC_TIMEOUT: Operation.DNS_QUERY,
    Failure.DNS_NO_ANSWER: Operation.DNS_ANSWER,
}
TLS_PORT = 443  # where a plain-TCP or UDP endpoint's name is checked for a certificate


@dataclass(frozen=True)
class NameTrouble:
    """The name's lookup here failed or lied; the control's addresses for it."""

    addresses: tuple[str, ...]


def control_addresses(control: Observation | None) -> tuple[str, ...]:
    """The public addresses the test helper resolved the name to (its answer's
    `evidence.resolved`); never a private one, whatever the answer says."""
    if control is None:
        return ()
    found = control.evidence.get("resolved") or ()
    return tuple(a for a in found if isinstance(a, str) and _public(a))


def worth_a_look(endpoint: Any, observation: Observation) -> bool:
    """Whether the observation may hide trouble with the name (cheap: no traffic)."""
    if endpoint.check not in HELPER_CHECKS or endpoint.check == "dns":
        return False
    if is_ip_literal(endpoint.host) or observation.status is Status.UNMEASURABLE:
        return False
    if observation.operation is Operation.RESOLVE:
        return observation.failure in LOOKUP_FAILURES
    address = observation.evidence.get("address")
    return isinstance(address, str) and (observation.status is Status.FAILED
                                         or not _public(address))


async def tampered(endpoint: Any, observation: Observation, control: Observation | None,
                   ctx: Context) -> tuple[Observation, NameTrouble] | None:
    """The observation of the name's lookup, when it failed or lied where the
    control resolved the name; None otherwise (the check's own stands)."""
    addresses = control_addresses(control)
    if not addresses or not worth_a_look(endpoint, observation):
        return None
    name: dict[str, Any] = {"query": endpoint.host, "control": list(addresses)}
    traffic = [observation.bytes_sent, observation.bytes_received]
    if observation.operation is Operation.RESOLVE:
        assert observation.failure is not None
        failure, operation = observation.failure, LOOKUP_FAILURES[observation.failure]
        name["local"] = {"failure": str(failure)}
    else:
        address = str(observation.evidence["address"])
        if address in addresses:
            return None
        name["local"] = {"address": address}
        name["at_local_address"] = {"status": str(observation.status),
                                    "failure": _text(observation.failure),
                                    "phase": observation.evidence.get("phase")}
        if is_bogon(address):
            failure, operation = Failure.DNS_BOGON, Operation.DNS_ANSWER
        else:
            consistency = await _consistency(endpoint, address, observation, ctx, traffic)
            name["local"]["consistency"] = consistency
            if consistency != "tls_invalid":
                return None  # another public address (a CDN?), not shown to be a lie
            failure, operation = Failure.DNS_MISMATCH, Operation.DNS_ANSWER
    result = Observation.failed(failure, operation, phase="resolve", name=name)
    result.bytes_sent, result.bytes_received = traffic
    return result, NameTrouble(addresses)


async def _consistency(endpoint: Any, address: str, observation: Observation, ctx: Context,
                       traffic: list[int]) -> str:
    if (observation.operation is Operation.TLS_HANDSHAKE
            and observation.failure in CERT_FAILURES):
        return "tls_invalid"  # the check's own handshake there already showed it
    port = endpoint.port if endpoint.transport_name is Transport.TLS else TLS_PORT
    return await tls_consistency(endpoint.host, address, port, ctx)


def at_address(endpoint: Any, address: str) -> Any:
    """The endpoint with its host replaced by `address`; the name stays the
    TLS server name (SNI and certificate validation)."""
    updates: dict[str, Any] = {"host": address}
    if "sni" in type(endpoint).model_fields:
        updates["sni"] = endpoint.sni or endpoint.host
    return endpoint.model_copy(update=updates)


def _public(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_global and not is_bogon(address)
    except ValueError:
        return False


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
