"""The test helper (`POST /api/v1/control`): runs the probe's own checks
(dns, tcp, tls, stun, turn, sip) from the collector's vantage point, so a probe
can tell "blocked where I am" from "down everywhere".

Work is bounded per request (endpoint count, one deadline for all), per process
(concurrent checks) and per key (endpoints per minute). Unless the operator
allows it, endpoints on loopback, private or otherwise non-global addresses
get no answer: a probe must not use the collector to reach its own network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from typing import Any

from pydantic import ValidationError

from collector.settings import Settings
from probe import checks
from probe.catalogue import ENDPOINT_ADAPTER, is_ip_literal
from probe.checks.base import Context, Observation

log = logging.getLogger(__name__)

SUPPORTED = frozenset({"dns", "tcp", "tls", "stun", "turn", "sip"})


def _global(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_global
    except ValueError:
        return False


class ControlRunner:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.resolver = settings.resolver_address
        self._slots: asyncio.Semaphore | None = None

    @property
    def slots(self) -> asyncio.Semaphore:
        if self._slots is None:  # created inside the server's event loop
            self._slots = asyncio.Semaphore(self.settings.control_concurrency)
        return self._slots

    async def run(self, raw_endpoints: list[Any]) -> list[dict[str, Any] | None]:
        """One result per endpoint, in order: an Observation as JSON, or None
        (invalid, unsupported, not allowed, failed internally, or out of time)."""
        deadline = time.monotonic() + self.settings.control_deadline_seconds
        tasks = [asyncio.ensure_future(self._one(raw, deadline)) for raw in raw_endpoints]
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            for task in tasks:
                task.cancel()

    async def _one(self, raw: Any, deadline: float) -> dict[str, Any] | None:
        try:
            endpoint = ENDPOINT_ADAPTER.validate_python(raw)
        except ValidationError:
            return None
        if endpoint.check not in SUPPORTED:
            return None
        try:
            check = checks.get(endpoint.check)
        except (ImportError, LookupError):  # a check not written yet
            return None
        try:
            async with self.slots:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                observation = await asyncio.wait_for(self._run(check, endpoint, remaining),
                                                     remaining)
        except TimeoutError:
            return None
        except Exception:
            log.exception("control check %s failed internally", endpoint.check)
            return None
        return None if observation is None else observation.model_dump(mode="json")

    async def _run(self, check: Any, endpoint: Any, remaining: float) -> Observation | None:
        timeout = min(self.settings.control_timeout_seconds,
                      getattr(check, "DEFAULT_TIMEOUT", 5.0), remaining)
        if not self.settings.control_allow_private and not await self._allowed(endpoint,
                                                                                 timeout):
            return None
        ctx = Context(timeout=timeout, resolver=self.resolver, is_control=True)
        result: Observation = await check.run(endpoint, ctx)
        return result

    async def _allowed(self, endpoint: Any, timeout: float) -> bool:
        if endpoint.check == "dns":  # only asks the collector's resolver
            return True
        host = endpoint.host
        if is_ip_literal(host):
            return _global(host)
        from probe.net import ResolveError, resolve_host

        try:
            address = await resolve_host(host, self.resolver, timeout)
        except (ResolveError, OSError):
            return True  # the check will meet (and record) the same failure
        return _global(address)
