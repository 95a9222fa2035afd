"""The test helper (`POST /api/v1/control`): runs the probe's own checks
(dns, tcp, tls, stun, turn, sip) from the collector's vantage point, so a probe
can tell "blocked where I am" from "down everywhere".

Work is bounded per request (endpoint count, one deadline for all), across
all workers (concurrent checks in all and per key, handed out by a fair
queue: collector/limits.py) and per key (endpoints per minute; distinct
targets per hour when the helper is not held to a catalogue). What the
helper may reach is `probe.run.helper.vet`'s to say: resolved once, every
address vetted against the deny-list, pinned for the check, fail closed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from sqlalchemy.engine import Engine

from collector.limits import Counters, Leases
from collector.settings import Settings
from probe.core.addresses import parse_prefixes
from probe.run import helper

log = logging.getLogger(__name__)

LEASE_KIND = "control"
TARGET_WINDOW = 3600.0


def helper_policy(settings: Settings, catalogue: Any | None) -> helper.Policy:
    targets = None
    if settings.helper_restricted:
        endpoints = [] if catalogue is None else [
            e for service in catalogue.services for e in service.endpoints]
        targets = helper.catalogue_targets(endpoints)
    return helper.Policy(allow_private=settings.control_allow_private,
                         denied=parse_prefixes(settings.control_denied_prefixes),
                         targets=targets)


class ControlRunner:
    def __init__(self, settings: Settings, engine: Engine, catalogue: Any | None = None) -> None:
        self.settings = settings
        self.resolver = settings.resolver_address
        self.policy = helper_policy(settings, catalogue)
        self.leases = Leases(engine)
        self.counters = Counters(engine)

    async def run(self, raw_endpoints: list[Any], key_id: str = "-"
                  ) -> list[dict[str, Any] | None]:
        """One result per endpoint, in order: an Observation as JSON, or None
        (invalid, unsupported, not allowed, failed internally, or out of time)."""
        deadline = time.monotonic() + self.settings.control_deadline_seconds
        tasks = [asyncio.ensure_future(self._one(raw, key_id, deadline))
                 for raw in raw_endpoints]
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            for task in tasks:
                task.cancel()

    async def _one(self, raw: Any, key_id: str, deadline: float) -> dict[str, Any] | None:
        endpoint = helper.parse_endpoint(raw)
        if endpoint is None:
            return None
        settings = self.settings
        try:
            if self.policy.targets is None and await asyncio.to_thread(
                    self.counters.distinct, "control_target", key_id,
                    f"{endpoint.host.lower()}:{endpoint.port}",
                    settings.control_targets_per_hour, TARGET_WINDOW):
                return None  # fan-out: a key probing ever new hosts and ports is scanning
            lease = await self.leases.acquire(
                LEASE_KIND, key_id, settings.control_concurrency,
                settings.control_concurrency_per_key, deadline,
                hold_seconds=settings.control_deadline_seconds + 5)
            if lease is None:
                return None
            try:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                return await asyncio.wait_for(self._run(endpoint, remaining), remaining)
            finally:
                await asyncio.shield(asyncio.to_thread(self.leases.release, lease))
        except TimeoutError:
            return None
        except helper.Refused as exc:
            log.info("control endpoint refused: %s", exc, extra={"event": "control_refused"})
            return None
        except Exception:
            log.exception("control check %s failed internally", endpoint.check)
            return None

    async def _run(self, endpoint: Any, remaining: float) -> dict[str, Any] | None:
        timeout = min(self.settings.control_timeout_seconds, helper.default_timeout(endpoint),
                      remaining)
        return await helper.observe(endpoint, timeout=timeout, resolver=self.resolver,
                                    policy=self.policy)
