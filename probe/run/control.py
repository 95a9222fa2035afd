"""Client for the test helper (`--control URL`): what the same endpoints look
like from an uncensored vantage point.

One request per run (in chunks) started as soon as the run starts; checks await
the answer for their endpoint only when they need it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from typing import Any
from urllib.parse import urlsplit

from probe.catalogue import ENDPOINT_ADAPTER, endpoint_key
from probe.checks.base import ControlState, Observation, Status
from probe.core.auth import sign_request
from probe.core.checks import HELPER_CHECKS
from probe.core.errors import ControlUnavailable, Failed
from probe.core.signing import ProbeKey

log = logging.getLogger(__name__)

PATH = "/api/v1/control"
CHUNK = 32
CONTROL_WAIT = 15.0  # seconds a run waits for the test helper before going on without it


def control_state(observation: Observation | None) -> ControlState:
    if observation is None or observation.status is Status.UNMEASURABLE:
        return ControlState.ABSENT
    return ControlState.OK if observation.status is Status.OK else ControlState.FAILED


class ControlClient:
    """`resolver`: the run's `--resolver` (the helper's name resolves like every
    other name of the pass)."""

    def __init__(self, base_url: str, key: ProbeKey | None, timeout: float = CONTROL_WAIT,
                 resolver: tuple[str, int] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.timeout = timeout
        self.resolver = resolver

    async def fetch(self, endpoints: list[Any]) -> list[Observation | None]:
        import h11

        from probe.checks.base import default_ssl_context
        from probe.dns.resolve import resolve_host
        from probe.net.http import request

        results: list[Observation | None] = []
        deadline = time.monotonic() + self.timeout
        path = urlsplit(self.base_url).path.rstrip("/") + PATH
        try:
            address = await resolve_host(urlsplit(self.base_url).hostname or "", self.resolver,
                                         max(deadline - time.monotonic(), 0.1))
        except Failed as exc:
            raise ControlUnavailable(f"control unreachable: {exc}") from exc
        for start in range(0, len(endpoints), CHUNK):
            chunk = endpoints[start:start + CHUNK]
            body = json.dumps(
                {"endpoints": [ENDPOINT_ADAPTER.dump_python(e, mode="json") for e in chunk]}
            ).encode()
            headers = {"Content-Type": "application/json"}
            if self.key is not None:
                headers.update(sign_request(self.key, "POST", path, body))
            try:  # each chunk gets the whole wait, as the helper checks it anew
                response = await request("POST", self.base_url + PATH, address, body=body,
                                         headers=headers,
                                         deadline=time.monotonic() + self.timeout,
                                         ssl_context=default_ssl_context)
            except (Failed, OSError, ssl.SSLError, TimeoutError, h11.ProtocolError,
                    ValueError) as exc:
                raise ControlUnavailable(f"control unreachable: {type(exc).__name__}") from exc
            if response.status != 200:
                raise ControlUnavailable(f"control answered HTTP {response.status}: "
                                         f"{response.body[:200].decode(errors='replace')}")
            try:
                items = json.loads(response.body)["results"]
                results.extend(None if item is None else Observation.model_validate(item)
                               for item in items)
            except (ValueError, KeyError, TypeError) as exc:
                raise ControlUnavailable("control sent a malformed answer") from exc
        return results


class ControlAnswers:
    """Starts the control request once; `await lookup(endpoint)` gives that
    endpoint's control observation, or None when there is none."""

    def __init__(self, client: ControlClient | None, endpoints: list[Any]) -> None:
        self.wanted = [e for e in endpoints if e.check in HELPER_CHECKS]
        self.client = client
        self.error: str | None = None if client else "no control configured"
        self.answered = False  # the control's answer arrived: the network works
        self._task: asyncio.Task[dict[str, Observation | None]] | None = None

    def start(self) -> None:
        if self.client is not None and self.wanted and self._task is None:
            self._task = asyncio.ensure_future(self._fetch())

    async def _fetch(self) -> dict[str, Observation | None]:
        assert self.client is not None
        try:
            observations = await self.client.fetch(self.wanted)
        except ControlUnavailable as exc:
            self.error = str(exc)
            log.warning("%s", exc)
            return {}
        self.answered = True
        return {endpoint_key(e): o for e, o in zip(self.wanted, observations, strict=False)}

    def abandon(self, reason: str) -> None:
        """Go on without the control at once: the pre-check could not even
        connect to it (a blocked collector), so its answer would only come as
        a timeout. Called before any check awaits it."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            self._task = None
            self.error = reason

    async def __call__(self, endpoint: Any) -> Observation | None:
        if self._task is None:
            return None
        # shielded: a check cancelled while waiting must not cancel the shared request
        results = await asyncio.shield(self._task)
        return results.get(endpoint_key(endpoint))

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
