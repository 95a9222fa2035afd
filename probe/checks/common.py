"""Helpers the checks share: target resolution and the failure -> blocking map
for the connection phase, so every check names a reset or an ICMP error alike."""

from __future__ import annotations

import time
from typing import Any

from probe.checks.base import Context, Observation
from probe.failures import Failure
from probe.net import ConnectFailure, ResolveError, resolve_host
from probe.record import Blocking

ICMP_FAILURES = frozenset({
    Failure.HOST_UNREACHABLE, Failure.NETWORK_UNREACHABLE,
    Failure.PORT_UNREACHABLE, Failure.ADMIN_PROHIBITED,
})


def tcp_blocking(failure: Failure) -> Blocking | None:
    """How a failed TCP connect looks as interference (None: not recognisable)."""
    if failure is Failure.CONNECTION_RESET:
        return Blocking.TCP_RESET
    if failure is Failure.GENERIC_TIMEOUT:
        return Blocking.TCP_TIMEOUT
    if failure in ICMP_FAILURES:
        return Blocking.ICMP_UNREACHABLE
    return None


def connect_failed(exc: ConnectFailure, **evidence: Any) -> Observation:
    evidence.update({"phase": "connect", "connect_ms": round(exc.elapsed_ms, 3),
                     "error": exc.detail})
    if exc.icmp:
        evidence["icmp"] = exc.icmp.as_evidence()
    return Observation.failed(exc.failure, tcp_blocking(exc.failure), **evidence)


async def resolve(endpoint: Any, ctx: Context) -> tuple[str | None, Observation | None]:
    """(address, None), or (None, an observation saying why the name did not resolve).

    A name that does not resolve is the `dns` check's finding; here it only
    means this check could not be made, so no blocking method is claimed."""
    start = time.perf_counter()
    try:
        return await resolve_host(endpoint.host, ctx.resolver, ctx.timeout), None
    except ResolveError as exc:
        elapsed = round((time.perf_counter() - start) * 1000, 3)
        return None, Observation.failed(exc.failure, None, phase="resolve",
                                        resolve_ms=elapsed, error=str(exc))
