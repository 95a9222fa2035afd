"""ASGI middleware: an access log without addresses, and security headers (a CSP
allowing nothing but this collector's own files). Body limits and request
signatures: collector/gate.py."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("collector.access")


class AccessLog:
    def __init__(self, app: ASGIApp, keep_ip: bool = False) -> None:
        self.app = app
        self.keep_ip = keep_ip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            extra: dict[str, Any] = {"method": scope["method"], "path": scope["path"],
                                     "status": status,
                                     "ms": round((time.perf_counter() - start) * 1000, 1)}
            if self.keep_ip and scope.get("client"):
                extra["client"] = scope["client"][0]
            log.info("%s %s %s", scope["method"], scope["path"], status, extra=extra)


# Pages load only the collector's own stylesheet, scripts (Swagger UI at /docs)
# and images; no inline script, no other site, no framing.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
HEADERS = ((b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
           (b"referrer-policy", b"same-origin"))


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in HEADERS if n not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)
