"""ASGI middleware: an access log without addresses (body limits and signatures:
collector/gate.py)."""

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
