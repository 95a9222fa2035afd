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
- Bodies must keep coming (uvicorn has no timeout of its own for them): 408
  `body_timeout` and the connection closed when no byte of a body arrives for
  `body_timeout_seconds` (30), or when after those seconds it averages less
  than `body_min_bytes_per_second` (1 KiB/s; a slow 3G link sends several).
  A client that sent all but the last byte of a body once held its
  connection and the body's memory for as long as it liked.
- Exports (`GET /api/v1/export`) and their proofs (`/api/v1/export/proof`)
  at once, per API process: each holds a chunk of records or of the log's
  leaves and its text (up to about 100 MB; collector/export.py) and, on
  SQLite, a reader process (collector/sqlite_reader.py), so
  `export_concurrency` (2) in all and `export_concurrency_per_client` (1) per
  address are streamed at once; 503 `exports_busy` / 429 `rate_limited`
  beyond, with Retry-After. Four exports at once once took 3.1 GB; proofs,
  every leaf of the log whatever the filter, were not counted at all.
- Exports must keep going out: one whose client takes none of the next
  SLICE_BYTES for `export_stall_seconds` (120), or that is still going after
  `export_max_seconds` (3600), is ended and its connection closed. A client
  that stopped reading, or read a trickle, once held its place, the reader
  process and the database snapshot it reads for as long as it liked; on
  SQLite that snapshot keeps the write-ahead log from being reset, so it grew
  with every upload meanwhile.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
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
EXPORTS = ("/api/v1/export", "/api/v1/export/proof")
SIGNED_ONLY = ("/api/v1/control",)
_KEY, _TIME, _SIGNATURE = (h.lower().encode() for h in (HEADER_KEY, HEADER_TIME,
                                                        HEADER_SIGNATURE))


log = logging.getLogger("collector.gate")
SLICE_BYTES = 1024 * 1024  # an export's bytes go out in pieces of at most this
# set in a request's task when the gate ended its response: uvicorn's line about
# a response left incomplete is then no error (_QuietOnPurpose)
_ENDED_ON_PURPOSE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "export_ended_on_purpose", default=False)


class _QuietOnPurpose(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (_ENDED_ON_PURPOSE.get() and
                    str(record.msg).startswith("ASGI callable returned without completing"))


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
        self.exports = _Slots(settings.export_concurrency,
                              settings.export_concurrency_per_client)
        server_log = logging.getLogger("uvicorn.error")
        if not any(isinstance(f, _QuietOnPurpose) for f in server_log.filters):
            server_log.addFilter(_QuietOnPurpose())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            receive, send = await self._admit(scope, receive, send)
        except Refusal as refusal:
            await _refuse(send, refusal)
            return
        if scope["path"] not in EXPORTS:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        subject = client_subject(client[0] if client else None)
        full = self.exports.take(subject)
        if full is not None:
            await _refuse(send, full)
            return
        paced = _Paced(send, self.settings.export_stall_seconds,
                       self.settings.export_max_seconds)
        try:
            await self.app(scope, receive, paced.send)
        except _Ended as ended:
            _ENDED_ON_PURPOSE.set(True)  # uvicorn then closes the connection
            log.warning("export ended: %s", ended,
                        extra={"event": ended.event, "path": scope["path"]})
        finally:
            self.exports.give(subject)

    async def _admit(self, scope: Scope, receive: Receive, send: Send
                     ) -> tuple[Receive, Send]:
        headers = dict(scope.get("headers", ()))
        path, method = scope["path"], scope["method"]
        ingest = path == INGEST and method == "POST"
        # signatures matter on the routes that take them; elsewhere they are ignored
        signed = (_KEY in headers or _SIGNATURE in headers) and (ingest or signed_only(path))
        limit = (self.settings.max_body_bytes if ingest and signed
                 else self.settings.max_request_bytes)
        declared = _declared(headers, limit)
        clock = _Clock(self.settings.body_timeout_seconds,
                       self.settings.body_min_bytes_per_second)
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
            if declared == 0 or (declared is None and b"transfer-encoding" not in headers):
                return receive, send  # no body (HTTP/1.1): nothing to limit or wait for
            body_of = _Unread(receive, send, limit, clock)
            return body_of.receive, body_of.send
        state = scope["app"].state  # Starlette sets scope["app"] before its middleware
        probe = await self._key(state, headers, ingest)
        try:
            body = await _read(receive, limit, clock.restart())
        except Refusal as refusal:
            if refusal.status == 408:
                _count(state, ingest, "body_timeout")
            raise
        stamp = headers[_TIME].decode("latin-1")
        signature = headers.get(_SIGNATURE, b"").decode("latin-1")
        if not verify_request(probe.public_raw, method, path, stamp, body, signature):
            _count(state, ingest, "bad_request_signature")
            raise _unauthorised("bad_signature", "the request signature does not verify")
        scope.setdefault("state", {})["probe"] = probe
        return _replay(body, receive), send

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


def _declared(headers: dict[bytes, bytes], limit: int) -> int | None:
    """The Content-Length, if there is one."""
    value = headers.get(b"content-length")
    if value is None:
        return None
    try:
        declared = int(value)
    except ValueError:
        raise Refusal(400, "bad_request", "Content-Length is not a number") from None
    if declared > limit:
        raise Refusal(413, "body_too_large", f"the body is larger than {limit} bytes")
    return declared


class _TooSlow(Exception):
    pass


class _Clock:
    """How long a request body may take: no more than `idle` seconds without
    a byte of it, and after its first `idle` seconds at least `rate` bytes a
    second on average (0: no minimum). A client trickling a byte now and then
    is cut off as one that stopped; a slow link is not (3G at its worst sends
    kilobytes a second, and the probe gives up itself after 60 s)."""

    def __init__(self, idle: float, rate: int) -> None:
        self.idle, self.rate = idle, rate
        self.start = self.last = 0.0
        self.received = 0

    def restart(self) -> _Clock:
        self.start = self.last = asyncio.get_running_loop().time()
        self.received = 0
        return self

    def deadline(self) -> float:
        due = self.last + self.idle
        if self.rate:
            due = min(due, self.start + self.idle + self.received / self.rate)
        return due

    async def receive(self, receive: Receive) -> Message:
        """The next message, or _TooSlow when it does not come in time."""
        try:
            async with asyncio.timeout_at(self.deadline()):
                message = await receive()
        except TimeoutError:
            raise _TooSlow from None
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            self.last = asyncio.get_running_loop().time()
        return message

    def refusal(self) -> Refusal:
        return Refusal(408, "body_timeout", "the request body came too slowly (nothing for "
                       f"{self.idle:g} s, or under {self.rate} bytes/s on average)")


async def _read(receive: Receive, limit: int, clock: _Clock) -> bytes:
    body = bytearray()
    while True:
        try:
            message = await clock.receive(receive)
        except _TooSlow:
            raise clock.refusal() from None
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


class _Unread:
    """The body of an unsigned request, read by the route as it likes: held
    to `limit` and to the clock. When it comes too slowly the gate answers
    408 itself (whatever the route makes of the error it is given) and drops
    what the route sends after."""

    def __init__(self, receive: Receive, send: Send, limit: int, clock: _Clock) -> None:
        self._receive, self._send = receive, send
        self.limit, self.clock = limit, clock.restart()
        self.seen = 0
        self.complete = self.started = self.answered = False

    async def receive(self) -> Message:
        if self.answered:
            return {"type": "http.disconnect"}
        if self.complete:  # e.g. waiting for the client to go away: no deadline
            return await self._receive()
        try:
            message = await self.clock.receive(self._receive)
        except _TooSlow:
            refusal = self.clock.refusal()
            if not self.started:
                self.answered = True
                await _refuse(self._send, refusal)
            raise HTTPException(408, refusal.detail) from None
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.limit:
                raise HTTPException(413, f"the body is larger than {self.limit} bytes")
            self.complete = not message.get("more_body")
        return message

    async def send(self, message: Message) -> None:
        if self.answered:
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


class _Ended(Exception):
    """An export the gate ended: `event` says why (the log's event name)."""

    def __init__(self, event: str, detail: str) -> None:
        super().__init__(detail)
        self.event = event


class _Paced:
    """An export's `send`: each piece of its body (SLICE_BYTES at most) must be
    taken within `stall` seconds, and the last by `longest` seconds after the
    first, else _Ended. The server waits in `send` while the client's socket
    is full, so a client that stops reading stops it there; the time the
    export takes to make its bytes is not counted as the client's."""

    def __init__(self, send: Send, stall: float, longest: float) -> None:
        self._send, self.stall, self.longest = send, stall, longest
        self.due = asyncio.get_running_loop().time() + longest

    async def send(self, message: Message) -> None:
        if message["type"] != "http.response.body":
            await self._send(message)
            return
        body = memoryview(message.get("body", b""))
        more = message.get("more_body", False)
        start = 0
        while True:
            piece = body[start:start + SLICE_BYTES]
            start += len(piece)
            last = start >= len(body)
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout_at(min(loop.time() + self.stall, self.due)):
                    await self._send({"type": "http.response.body", "body": piece,
                                      "more_body": more or not last})
            except TimeoutError:
                if loop.time() >= self.due:
                    raise _Ended("export_too_long", f"still going after {self.longest:g} s "
                                 "(export_max_seconds)") from None
                raise _Ended("export_stalled", f"its client took nothing for "
                             f"{self.stall:g} s (export_stall_seconds)") from None
            if last:
                return


class _Slots:
    """Places for exports in this process: `total` in all, `each` per client."""

    def __init__(self, total: int, each: int) -> None:
        self.total, self.each = total, each
        self.held: dict[str, int] = {}
        self.running = 0

    def take(self, subject: str) -> Refusal | None:
        if self.held.get(subject, 0) >= self.each:
            return Refusal(429, "rate_limited", f"{self.each} exports at once from one "
                           "address; retry when one is done", {"Retry-After": "60"})
        if self.running >= self.total:
            return Refusal(503, "exports_busy", f"{self.total} exports are being streamed; "
                           "retry in a minute", {"Retry-After": "60"})
        self.running += 1
        self.held[subject] = self.held.get(subject, 0) + 1
        return None

    def give(self, subject: str) -> None:
        self.running -= 1
        self.held[subject] -= 1
        if not self.held[subject]:
            del self.held[subject]


async def _refuse(send: Send, refusal: Refusal) -> None:
    body = json.dumps({"error": refusal.code, "detail": refusal.detail}).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    if refusal.status in (408, 413):  # the rest of the body is not read
        headers.append((b"connection", b"close"))
    headers += [(k.lower().encode(), v.encode()) for k, v in (refusal.headers or {}).items()]
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
