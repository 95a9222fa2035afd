"""Resolution of the names the checks need, through the run's resolver."""

from __future__ import annotations

import ipaddress

from probe.core.errors import DnsError, ResolveError
from probe.core.failures import Failure
from probe.dns.query import query_addresses


async def resolve_host(host: str, resolver: tuple[str, int] | None, timeout: float) -> str:
    """The first address of `host` (an IP literal passes through unchanged)."""
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    try:
        answer = await query_addresses(host, "A", resolver, timeout)
    except DnsError as exc:
        raise ResolveError(exc.failure, str(exc)) from exc
    if not answer.addresses:
        raise ResolveError(Failure.DNS_NO_ANSWER, f"{host}: no A record")
    return answer.addresses[0]
