"""The API side of the media service: requests for the WebRTC reference peer and
the throttling reflector are forwarded, unchanged, to the one process that
holds their state (collector/media.py), when the API runs in several workers
or the media service runs elsewhere (setting `media_url`).

The probe's signature covers the method, the path and the body, all forwarded
as they came; the media service checks it itself. What only the API knows is
added in two headers, which the media service believes only from the proxies
it trusts (`media_proxies`): the probe's address (`X-Voipwatch-Client`: the
reflector echoes to it alone) and the address the request came in on
(`X-Voipwatch-Local`: where the reflector listens unless `reflector_address`
says otherwise).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx

log = logging.getLogger("collector.media")

PREFIXES = ("/api/v1/webrtc/", "/api/v1/reflector/")
CLIENT_HEADER = "x-voipwatch-client"
LOCAL_HEADER = "x-voipwatch-local"
FORWARDED = ("content-type", "x-voipwatch-key", "x-voipwatch-time", "x-voipwatch-signature")
RETURNED = (b"content-type", b"retry-after", b"www-authenticate")
TIMEOUT = 30.0  # an offer's answer waits for ICE gathering (up to 10 s)


def is_media(path: str) -> bool:
    return path.startswith(PREFIXES)


class MediaProxy:
    """ASGI middleware: media paths go to `media_url`, everything else to the app."""

    def __init__(self, app: Any, media_url: str) -> None:
        self.app = app
        self.media_url = media_url.rstrip("/")
        self.client: httpx.AsyncClient | None = None  # one per worker, on its event loop

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not is_media(scope["path"]):
            await self.app(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {name.decode("latin-1"): value.decode("latin-1")
                   for name, value in scope["headers"] if name.decode("latin-1") in FORWARDED}
        client, server = scope.get("client"), scope.get("server")
        headers[CLIENT_HEADER] = client[0] if client else ""
        headers[LOCAL_HEADER] = server[0] if server else ""
        query = scope.get("query_string", b"").decode("latin-1")
        url = self.media_url + scope["path"] + (f"?{query}" if query else "")
        if self.client is None:
            self.client = httpx.AsyncClient(timeout=TIMEOUT)
        try:
            response = await self.client.request(scope["method"], url, content=bytes(body),
                                                 headers=headers)
        except httpx.HTTPError as exc:
            log.error("media service unreachable", extra={
                "event": "media_unreachable", "media_url": self.media_url, "error": str(exc)})
            await _send(send, 503, json.dumps({
                "error": "media_unavailable", "detail": "the collector's media service "
                "(reference peer, reflector) does not answer; retry later"}).encode(),
                [(b"content-type", b"application/json"), (b"retry-after", b"5")])
            return
        returned = [(name.encode(), value.encode()) for name, value in response.headers.items()
                    if name.encode() in RETURNED]
        await _send(send, response.status_code, response.content, returned)


async def _send(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class TrustedForwarder:
    """ASGI middleware of the media service: the probe's address and the local
    address, as the API saw them, from trusted proxies only."""

    def __init__(self, app: Any, trusted: set[str]) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        peer = scope.get("client")
        if scope["type"] == "http" and peer and peer[0] in self.trusted:
            headers = dict(scope["headers"])
            client = headers.get(CLIENT_HEADER.encode(), b"").decode("latin-1")
            local = headers.get(LOCAL_HEADER.encode(), b"").decode("latin-1")
            if client or local:
                scope = dict(scope)
                if client:
                    scope["client"] = (client, 0)
                if local:
                    scope["server"] = (local, (scope.get("server") or ("", 0))[1])
        await self.app(scope, receive, send)
