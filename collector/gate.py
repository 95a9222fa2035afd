"""The gate every request passes before any route parses it (ASGI middleware).

- Body limits per route: `max_body_bytes` (16 MiB) for a *signed* ingest
  request, `max_request_bytes` (256 KiB) for everything else, unsigned
  ingest included; by Content-Length up front, else as the body streams in.
- Request signatures (probe/core/auth.py: Ed25519 over METHOD, PATH, TIME and
  the SHA-256 of the body) checked on the raw body bytes, before any JSON is
  decoded: the key is looked up (unknown: 401, revoked: 403) before the body
  is even read, then one Ed25519 verification. Routes only probes may use
  (test helper, reference peer, reflector) must be signed; ingest may be
  signed (the probe's uploader) or not (old clients, researchers' scripts),
  and unsigned requests are held to the small body cap and to a per-address
  rate (in memory, per worker: an outsider must not make the collector write).
- The verified key is handed to the route in `scope["state"]["probe"]`
  (`collector.auth.SignedProbe` reads it): one verification per request.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from collector.limits import client_subject
from collector.media_proxy import is_media
from collector.ratelimit import RateLimiter
from collector.settings import Settings
from probe.core.auth import (
    HEADER_KEY,
    HEADER_SIGNATURE,
    HEADER_TIME,
    header_refusal,
    verify_request,
)

INGEST = "/api/v1/measurements"
SIGNED_ONLY = ("/api/v1/control",)
_KEY, _TIME, _SIGNATURE = (h.lower().encode() for h in (HEADER_KEY, HEADER_TIME,
                                                        HEADER_SIGNATURE))


class Refusal(Exception):
    def __init__(self, status: int, code: str, detail: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers


def _unauthorised(code: str, detail: str) -> Refusal:
    return Refusal(401, code, detail, {"WWW-Authenticate": "Voipwatch-Signature"})


def signed_only(path: str) -> bool:
    return path in SIGNED_ONLY or is_media(path)


class Gate:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.unsigned = RateLimiter(settings.unsigned_rate_per_minute,
                                    burst=max(settings.unsigned_rate_per_minute // 3, 5))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            receive = await self._admit(scope, receive)
        except Refusal as refusal:
            await _refuse(send, refusal)
            return
        await self.app(scope, receive, send)

    async def _admit(self, scope: Scope, receive: Receive) -> Receive:
        headers = dict(scope.get("headers", ()))
        path, method = scope["path"], scope["method"]
        ingest = path == INGEST and method == "POST"
        # signatures matter on the routes that take them; elsewhere they are ignored
        signed = (_KEY in headers or _SIGNATURE in headers) and (ingest or signed_only(path))
        limit = (self.settings.max_body_bytes if ingest and signed
                 else self.settings.max_request_bytes)
        _declared(headers, limit)
        if not signed:
            if signed_only(path):
                unsigned = header_refusal(None, None, signed=False)
                assert unsigned is not None  # no headers: always refused
                raise _unauthorised(*unsigned)
            if ingest:
                client = scope.get("client")
                wait = self.unsigned.take(client_subject(client[0] if client else None))
                if wait:
                    raise Refusal(429, "rate_limited", "too many unsigned uploads from this "
                                  "address; sign them (probe/core/auth.py)",
                                  {"Retry-After": str(int(wait) + 1)})
            return _limited(receive, limit)
        state = scope["app"].state  # Starlette sets scope["app"] before its middleware
        probe = await self._key(state, headers, ingest)
        body = await _read(receive, limit)
        stamp = headers[_TIME].decode("latin-1")
        signature = headers.get(_SIGNATURE, b"").decode("latin-1")
        if not verify_request(probe.public_raw, method, path, stamp, body, signature):
            _count(state, ingest, "bad_request_signature")
            raise _unauthorised("bad_signature", "the request signature does not verify")
        scope.setdefault("state", {})["probe"] = probe
        return _replay(body, receive)

    async def _key(self, state: Any, headers: dict[bytes, bytes], ingest: bool) -> Any:
        key_id = headers.get(_KEY, b"").decode("latin-1")
        stamp = headers.get(_TIME, b"").decode("latin-1")
        refusal = header_refusal(key_id, stamp, _SIGNATURE in headers)
        if refusal is not None:
            raise _unauthorised(*refusal)
        if len(key_id) != 64:
            probe = None
        else:
            probe = await run_in_threadpool(state.services.keys.get, key_id)
        if probe is None:
            _count(state, ingest, "unknown_key")
            raise _unauthorised("unknown_key", "this key is not registered "
                                "(voipwatch-probe register --collector URL)")
        if probe.revoked:
            _count(state, ingest, "revoked_key")
            raise Refusal(403, "revoked_key", "this key was revoked")
        return probe



def _count(state: Any, ingest: bool, reason: str) -> None:
    if ingest:  # refused uploads are rejections too, counted without a write
        tally = getattr(state.services, "tally", None)
        if tally is not None:
            tally.add({f"request.{reason}"[:32]: 1})


def _declared(headers: dict[bytes, bytes], limit: int) -> None:
    value = headers.get(b"content-length")
    if value is not None:
        try:
            declared = int(value)
        except ValueError:
            raise Refusal(400, "bad_request", "Content-Length is not a number") from None
        if declared > limit:
            raise Refusal(413, "body_too_large", f"the body is larger than {limit} bytes")


async def _read(receive: Receive, limit: int) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Refusal(400, "bad_request", "the client went away")
        body += message.get("body", b"")
        if len(body) > limit:
            raise Refusal(413, "body_too_large", f"the body is larger than {limit} bytes")
        if not message.get("more_body"):
            return bytes(body)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _limited(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def limited() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                from starlette.exceptions import HTTPException

                raise HTTPException(413, f"the body is larger than {limit} bytes")
        return message

    return limited


async def _refuse(send: Send, refusal: Refusal) -> None:
    body = json.dumps({"error": refusal.code, "detail": refusal.detail}).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    if refusal.status == 413:
        headers.append((b"connection", b"close"))
    headers += [(k.lower().encode(), v.encode()) for k, v in (refusal.headers or {}).items()]
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
