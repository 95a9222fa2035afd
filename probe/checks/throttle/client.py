"""The probe's side of the reflector's session API (collector/routers/reflector.py):
signed requests (probe/core/auth.py) to open a session, and to close it and fetch
its report."""

from __future__ import annotations

import base64
import json
import ssl
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from probe.core.auth import sign_request
from probe.core.errors import Failed, ReflectorUnavailable, ResolveError
from probe.core.failures import Failure, classify_error, describe
from probe.core.signing import ProbeKey

SESSIONS = "/api/v1/reflector/sessions"
HTTP_OVERHEAD = 400  # request and response headers, TCP/TLS framing: an estimate per call


@dataclass(frozen=True)
class Session:
    id: str
    key: bytes
    address: str
    port: int
    transport: str


class ReflectorClient:
    """`resolver`: the run's `--resolver`. The reflector's name is resolved once,
    with the probe's own resolver (two quick tries, probe/dns/query.py), not the
    C library's (one 5 s timeout per lost query, which a lossy link turns into
    a failed session)."""

    def __init__(self, base_url: str, key: ProbeKey, timeout: float,
                 resolver: tuple[str, int] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.parts = urlsplit(self.base_url)
        self.prefix = self.parts.path.rstrip("/")
        self.key = key
        self.timeout = timeout
        self.resolver = resolver
        self.address: str | None = None
        self.bytes_sent = self.bytes_received = 0

    async def _address(self) -> str:
        """The reflector host's address, resolved once with the run's resolver."""
        from probe.dns.resolve import resolve_host

        host = self.parts.hostname or ""
        for attempt in range(2):  # a lossy link may lose both tries of one lookup
            if self.address is not None:
                break
            try:
                self.address = await resolve_host(host, self.resolver, self.timeout)
            except ResolveError as exc:
                if attempt:
                    raise ReflectorUnavailable(exc.failure, f"cannot resolve the "
                                               f"reflector's name: {exc}") from exc
        assert self.address is not None
        return self.address

    async def open(self, port: int, transport: str, duration: float) -> Session:
        body = json.dumps({"port": port, "transport": transport,
                           "duration_s": round(duration, 3)}).encode()
        data = await self._call("POST", SESSIONS, body)
        try:
            return Session(str(data["id"]), base64.b64decode(data["key"]), str(data["address"]),
                           int(data["port"]), str(data["transport"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ReflectorUnavailable(Failure.PROTOCOL_ERROR,
                                       "the reflector's session answer is malformed") from exc

    async def report(self, session: Session) -> dict[str, Any]:
        """What the reflector has received so far."""
        return await self._call("GET", f"{SESSIONS}/{session.id}/report", b"")

    async def close(self, session: Session) -> dict[str, Any]:
        """Close the session; its final report."""
        return await self._call("DELETE", f"{SESSIONS}/{session.id}", b"")

    async def _call(self, method: str, path: str, body: bytes) -> dict[str, Any]:
        import h11

        from probe.checks.base import default_ssl_context
        from probe.net.http import request

        address = await self._address()
        headers = dict(sign_request(self.key, method, self.prefix + path, body))
        if body:
            headers["Content-Type"] = "application/json"
        try:
            response = await request(method, self.base_url + path, address, body=body,
                                     headers=headers, ssl_context=default_ssl_context,
                                     deadline=time.monotonic() + self.timeout)
        except (Failed, OSError, ssl.SSLError, h11.ProtocolError, ValueError) as exc:
            failure = exc.failure if isinstance(exc, Failed) else (
                Failure.PROTOCOL_ERROR if isinstance(exc, h11.ProtocolError | ValueError)
                else classify_error(exc))
            raise ReflectorUnavailable(failure, f"reflector unreachable: {describe(exc)}") \
                from exc
        except TimeoutError as exc:
            raise ReflectorUnavailable(Failure.GENERIC_TIMEOUT,
                                       "reflector unreachable: no answer in time") from exc
        self.bytes_sent += response.traffic[0] or len(body) + HTTP_OVERHEAD
        self.bytes_received += response.traffic[1] or len(response.body) + HTTP_OVERHEAD
        if response.status not in (200, 201):
            try:
                error = json.loads(response.body)
                detail = f"{error.get('error')}: {error.get('detail')}"
            except (ValueError, AttributeError):
                detail = response.body[:200].decode(errors="replace")
            raise ReflectorUnavailable(Failure.ERROR_RESPONSE,
                                       f"reflector answered HTTP {response.status}: "
                                       f"{detail}", response.status)
        try:
            data = json.loads(response.body)
        except ValueError as exc:
            raise ReflectorUnavailable(Failure.PROTOCOL_ERROR,
                                       "the reflector's answer is not JSON") from exc
        if not isinstance(data, dict):
            raise ReflectorUnavailable(Failure.PROTOCOL_ERROR,
                                       "the reflector's answer is not a JSON object")
        return data
