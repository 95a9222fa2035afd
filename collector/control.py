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
import logging
import time
from typing import Any

from collector.settings import Settings
from probe.run import helper

log = logging.getLogger(__name__)


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
        endpoint = helper.parse_endpoint(raw)
        if endpoint is None:
            return None
        try:
            async with self.slots:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                return await asyncio.wait_for(self._run(endpoint, remaining), remaining)
        except TimeoutError:
            return None
        except Exception:
            log.exception("control check %s failed internally", endpoint.check)
            return None

    async def _run(self, endpoint: Any, remaining: float) -> dict[str, Any] | None:
        timeout = min(self.settings.control_timeout_seconds, helper.default_timeout(endpoint),
                      remaining)
        if not self.settings.control_allow_private and not await helper.targets_global_address(
                endpoint, self.resolver, timeout):
            return None
        return await helper.observe(endpoint, timeout=timeout, resolver=self.resolver)
