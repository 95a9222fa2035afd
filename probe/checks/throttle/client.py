"""The probe's side of the reflector's session API (collector/routers/reflector.py):
signed requests (probe/core/auth.py) to open a session, and to close it and fetch
its report."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from probe.core.auth import sign_request
from probe.core.errors import ReflectorUnavailable, ResolveError
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

    async def _target(self, path: str) -> tuple[str, dict[str, str], dict[str, Any]]:
        """The URL to send to (the host's address), the Host header and httpx extensions."""
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
        literal = f"[{self.address}]" if ":" in self.address else self.address
        netloc = literal + (f":{self.parts.port}" if self.parts.port else "")
        url = f"{self.parts.scheme}://{netloc}{self.prefix}{path}"
        extensions = {"sni_hostname": host} if self.parts.scheme == "https" else {}
        return url, {"Host": self.parts.netloc.rsplit("@", 1)[-1]}, extensions

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
        import httpx

        from probe.checks.base import default_ssl_context

        url, headers, extensions = await self._target(path)
        if body:
            headers["Content-Type"] = "application/json"
        headers.update(sign_request(self.key, method, self.prefix + path, body))
        self.bytes_sent += len(body) + HTTP_OVERHEAD
        try:
            async with httpx.AsyncClient(timeout=self.timeout,
                                         verify=default_ssl_context()) as client:
                response = await client.request(method, url, content=body, headers=headers,
                                                extensions=extensions)
        except httpx.HTTPError as exc:
            cause = _root_cause(exc)
            failure = (Failure.GENERIC_TIMEOUT if isinstance(exc, httpx.TimeoutException)
                       else classify_error(cause))
            raise ReflectorUnavailable(failure, f"reflector unreachable: {describe(cause)}") \
                from exc
        self.bytes_received += len(response.content) + HTTP_OVERHEAD
        if response.status_code not in (200, 201):
            try:
                error = response.json()
                detail = f"{error.get('error')}: {error.get('detail')}"
            except ValueError:
                detail = response.text[:200]
            raise ReflectorUnavailable(Failure.ERROR_RESPONSE,
                                       f"reflector answered HTTP {response.status_code}: "
                                       f"{detail}", response.status_code)
        try:
            data = response.json()
        except ValueError as exc:
            raise ReflectorUnavailable(Failure.PROTOCOL_ERROR,
                                       "the reflector's answer is not JSON") from exc
        if not isinstance(data, dict):
            raise ReflectorUnavailable(Failure.PROTOCOL_ERROR,
                                       "the reflector's answer is not a JSON object")
        return data


def _root_cause(exc: BaseException) -> BaseException:
    """The OS error under httpx's and httpcore's wrappers, if there is one."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    errors = [e for e in chain if isinstance(e, OSError)]
    with_errno = [e for e in errors if e.errno is not None]
    candidates: list[BaseException] = [*with_errno] or [*errors] or [exc]
    return candidates[0]
