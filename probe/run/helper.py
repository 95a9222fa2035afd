"""The test helper's entry point: run one catalogue endpoint from the control
vantage point (the collector's `POST /api/v1/control`), exactly as the probe's
own check would, and answer with the observation as JSON.

This module is the collector's one way into the probe's checks; an
import-linter contract (pyproject.toml) holds the collector to it.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from pydantic import ValidationError

from probe import checks
from probe.catalogue import ENDPOINT_ADAPTER, is_ip_literal
from probe.checks.base import Context, Observation
from probe.core.checks import HELPER_CHECKS
from probe.core.errors import DnsError, ResolveError
from probe.dns.query import query_addresses
from probe.dns.resolve import resolve_host
from probe.verdict.methods import suspected


def parse_endpoint(raw: Any) -> Any | None:
    """The catalogue endpoint `raw` describes, if it is valid and its check is
    one the helper runs; else None."""
    try:
        endpoint = ENDPOINT_ADAPTER.validate_python(raw)
    except ValidationError:
        return None
    return endpoint if endpoint.check in HELPER_CHECKS else None


def default_timeout(endpoint: Any) -> float:
    return float(checks.get(endpoint.check).DEFAULT_TIMEOUT)


def _global(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_global
    except ValueError:
        return False


async def targets_global_address(endpoint: Any, resolver: tuple[str, int] | None,
                                 timeout: float) -> bool:
    """Whether the endpoint is on a global address (a probe must not use the
    helper to reach the helper's own network). A name that does not resolve
    counts as global: the check will meet, and record, the same failure."""
    if endpoint.check == "dns":  # only asks the helper's resolver
        return True
    host = endpoint.host
    if is_ip_literal(host):
        return _global(host)
    try:
        address = await resolve_host(host, resolver, timeout)
    except (ResolveError, OSError):
        return True
    return _global(address)


async def observe(endpoint: Any, *, timeout: float,
                  resolver: tuple[str, int] | None) -> dict[str, Any]:
    """Run the endpoint's check as the control: the observation, as the
    helper's JSON answer carries it."""
    ctx = Context(timeout=timeout, resolver=resolver, is_control=True)
    observation = await checks.get(endpoint.check).run(endpoint, ctx)
    resolved = await public_addresses(endpoint, resolver, timeout)
    if resolved:
        observation.evidence["resolved"] = resolved
    return answer(observation)


async def public_addresses(endpoint: Any, resolver: tuple[str, int] | None,
                           timeout: float) -> list[str]:
    """The public addresses of the endpoint's name as the helper resolves it
    (`evidence.resolved` of its answer): a probe whose own lookup failed or
    was forged goes on against these (docs/measurement.md, `beyond_dns`).
    Never a private one; nothing for an IP literal or a `dns` endpoint."""
    if endpoint.check == "dns" or is_ip_literal(endpoint.host):
        return []
    try:
        answer = await query_addresses(endpoint.host, "A", resolver, timeout)
    except (DnsError, OSError):
        return []
    return [a for a in answer.addresses if _global(a)]


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
