"""The test helper's entry point: run one catalogue endpoint from the control
vantage point (the collector's `POST /api/v1/control`), exactly as the probe's
own check would, and answer with the observation as JSON.

Before any check runs, `vet` resolves each name the check needs once (the
endpoint's host, a TURN `peer`), refuses the endpoint if any address is on the
deny-list (probe.core.addresses, plus the operator's prefixes) or if a name
does not resolve (fail closed), and pins the vetted addresses into the
check's Context: the check connects to exactly those, so a second answer
(DNS rebinding, or another of several A records) is never used. An operator
can also hold the helper to the endpoints of a catalogue (`Policy.targets`).

This module is the collector's one way into the probe's checks; an
import-linter contract (pyproject.toml) holds the collector to it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from probe import checks
from probe.catalogue import ENDPOINT_ADAPTER, is_ip_literal
from probe.checks.base import Context, Observation
from probe.core.addresses import Network, refusal
from probe.core.checks import HELPER_CHECKS
from probe.core.errors import DnsError, VoipwatchError
from probe.dns.query import query_addresses
from probe.verdict.methods import suspected

Target = tuple[str, str, int, str]  # check, host (lower case), port, transport

UDP_MAX_PAYLOAD = 1500  # bytes per datagram the helper sends: no amplification by size
MAX_SENDS = 3  # a request and two retransmissions (0, 0.5, 1.5 s)


class Refused(VoipwatchError):
    """The helper will not run this endpoint; the message says why (for logs only:
    the probe gets null, which tells an outsider nothing about the network)."""


@dataclass(frozen=True)
class Policy:
    """What the helper may reach. `targets`: the endpoints it may run (None: any)."""

    allow_private: bool = False
    denied: tuple[Network, ...] = ()
    targets: frozenset[Target] | None = None
    udp_max_payload: int = UDP_MAX_PAYLOAD
    max_sends: int = MAX_SENDS

    def may_reach(self, address: str) -> bool:
        return self.allow_private or refusal(address, self.denied) is None


def parse_endpoint(raw: Any) -> Any | None:
    """The catalogue endpoint `raw` describes, if it is valid and its check is
    one the helper runs; else None."""
    try:
        endpoint = ENDPOINT_ADAPTER.validate_python(raw)
    except ValidationError:
        return None
    return endpoint if endpoint.check in HELPER_CHECKS else None


def target_of(endpoint: Any) -> Target:
    return (str(endpoint.check), endpoint.host.lower().rstrip("."), int(endpoint.port),
            str(endpoint.transport))


def catalogue_targets(endpoints: Iterable[Any]) -> frozenset[Target]:
    """The targets of a catalogue's helper checks (`Policy.targets`)."""
    return frozenset(target_of(e) for e in endpoints if e.check in HELPER_CHECKS)


def default_timeout(endpoint: Any) -> float:
    return float(checks.get(endpoint.check).DEFAULT_TIMEOUT)


def _peer_host(endpoint: Any) -> str | None:
    peer = getattr(endpoint, "peer", None)
    if not peer or not getattr(endpoint, "username", None):
        return None  # the check relays data only with credentials and a peer
    from probe.checks.turn import parse_peer

    return parse_peer(peer)[0]


async def _addresses(host: str, resolver: tuple[str, int] | None, timeout: float) -> list[str]:
    if is_ip_literal(host):
        return [host]
    try:
        answer = await query_addresses(host, "A", resolver, timeout)
    except (DnsError, OSError) as exc:
        raise Refused(f"{host} did not resolve: {exc}") from None
    if not answer.addresses:
        raise Refused(f"{host} has no address")
    return answer.addresses


@dataclass(frozen=True)
class Vetted:
    pinned: dict[str, str]  # name (or literal) -> the one address the check may use
    resolved: list[str]  # the host's public addresses, for `evidence.resolved`


async def vet(endpoint: Any, resolver: tuple[str, int] | None, timeout: float,
              policy: Policy) -> Vetted:
    """The addresses the check may use, by name, each resolved once and
    vetted; Refused when the endpoint is not allowed, a name does not resolve
    or any of its addresses is refused."""
    if policy.targets is not None and target_of(endpoint) not in policy.targets:
        raise Refused("not an endpoint of the collector's catalogue")
    if endpoint.check == "dns":  # asks the helper's resolver only; answers are filtered
        return Vetted({}, [])
    pinned: dict[str, str] = {}
    resolved: list[str] = []
    for host in (endpoint.host, _peer_host(endpoint)):
        if host is None or host in pinned:
            continue
        addresses = await _addresses(host, resolver, timeout)
        for address in addresses:
            if not policy.may_reach(address):
                raise Refused(f"{host}: {address} is {refusal(address, policy.denied)}")
        pinned[host] = addresses[0]
        if host == endpoint.host and not is_ip_literal(host):
            resolved = [a for a in addresses if refusal(a, policy.denied) is None]
    return Vetted(pinned, resolved)


async def observe(endpoint: Any, *, timeout: float, resolver: tuple[str, int] | None,
                  policy: Policy | None = None) -> dict[str, Any]:
    """Vet the endpoint, then run its check as the control with the vetted
    addresses pinned: the observation, as the helper's JSON answer carries it.
    Raises Refused."""
    policy = policy or Policy()
    vetted = await vet(endpoint, resolver, timeout, policy)
    ctx = Context(timeout=timeout, resolver=resolver, is_control=True, pinned=vetted.pinned,
                  udp_max_payload=policy.udp_max_payload, max_sends=policy.max_sends,
                  reveal=policy.may_reach)
    observation = await checks.get(endpoint.check).run(endpoint, ctx)
    if vetted.resolved:  # from the one lookup the check used: no second answer to trust
        observation.evidence["resolved"] = vetted.resolved
    return answer(observation)


async def public_addresses(endpoint: Any, resolver: tuple[str, int] | None,
                           timeout: float) -> list[str]:
    """The public addresses of the endpoint's name as the helper resolves it
    (`evidence.resolved` of its answer, which `observe` takes from its one
    vetted lookup): a probe whose own lookup failed or was forged goes on
    against these (docs/measurement.md, `beyond_dns`). Never a private one;
    nothing for an IP literal or a `dns` endpoint."""
    if endpoint.check == "dns" or is_ip_literal(endpoint.host):
        return []
    try:
        answer = await query_addresses(endpoint.host, "A", resolver, timeout)
    except (DnsError, OSError):
        return []
    return [a for a in answer.addresses if refusal(a) is None]


def answer(observation: Observation) -> dict[str, Any]:
    """An observation as the helper's JSON answer carries it: with the blocking
    method it suggests (`blocking`), without the operation (a probe's own
    classification is the probe's)."""
    method = suspected(observation)
    return {"status": str(observation.status),
            "failure": None if observation.failure is None else str(observation.failure),
            "blocking": None if method is None else str(method),
            "evidence": observation.model_dump(mode="json", include={"evidence"})["evidence"],
            "bytes_sent": observation.bytes_sent, "bytes_received": observation.bytes_received,
            "control": None if observation.control is None else str(observation.control)}
