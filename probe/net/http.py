"""HTTP/1.1 requests to the collector over a measured flow (RFC 9112, h11).

The probe talks to its collector for the test helper, the throttling
reflector and the WebRTC reference peer. One small client serves all three:
it runs over `probe.net.flow` (so its bytes are counted, and a failure to
connect is the same ConnectFailed/HandshakeFailed a check sees), one request
per connection (`Connection: close`), with a deadline and a response size cap.
It replaces httpx during a pass: httpx and its company cost a pass about
4 MiB and its start-up time, for three kinds of one-shot requests.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

import h11

import probe
from probe.core.errors import FlowClosed
from probe.core.failures import Failure, classify_error, describe
from probe.core.record import Transport
from probe.net.flow import Flow, open_flow

MAX_RESPONSE = 1024 * 1024


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes
    elapsed_ms: float
    traffic: tuple[int, int]  # bytes sent, received on the connection


def _no_framing(data: bytes) -> int | None:
    return None  # h11 frames the messages


def url_parts(url: str) -> SplitResult:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http:// or https:// URL: {url!r}")
    return parts


def default_port(parts: SplitResult) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)


async def request(method: str, url: str, address: str, *, body: bytes = b"",
                  headers: Mapping[str, str] | None = None, deadline: float,
                  ssl_context: Callable[[], ssl.SSLContext],
                  max_response: int = MAX_RESPONSE) -> HttpResponse:
    """One request to `url`'s host at `address` (already resolved: the caller
    chooses the resolver), TLS with the URL's host as SNI for https. Raises
    ConnectFailed or HandshakeFailed (connect), FlowClosed, TimeoutError,
    h11.ProtocolError or ValueError (the exchange)."""
    parts = url_parts(url)
    transport = Transport.TLS if parts.scheme == "https" else Transport.TCP
    start = time.perf_counter()
    flow = await open_flow(address, default_port(parts), transport, ssl_context,
                           sni=parts.hostname or "", deadline=deadline, framer=_no_framing)
    try:
        status, received, content = await exchange(flow, method, parts, body, headers or {},
                                                   deadline, max_response)
    finally:
        flow.close()
    return HttpResponse(status, received, content,
                        round((time.perf_counter() - start) * 1000, 3), flow.traffic())


async def exchange(flow: Flow, method: str, parts: SplitResult, body: bytes,
                   headers: Mapping[str, str], deadline: float,
                   max_response: int = MAX_RESPONSE) -> tuple[int, dict[str, str], bytes]:
    """Send one request on an open stream flow and read the whole response."""
    assert flow.streams is not None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default = 443 if parts.scheme == "https" else 80
    host = parts.hostname if (parts.port or default) == default else parts.netloc
    fields = [("Host", host or ""), ("User-Agent", f"voipwatch-probe/{probe.__version__}"),
              ("Content-Length", str(len(body))), ("Connection", "close"),
              *headers.items()]
    conn = h11.Connection(h11.CLIENT)
    await flow.send(conn.send(h11.Request(method=method, target=target, headers=fields))
                    + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
    reader = flow.streams[0]
    status, received, content = 0, {}, bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            try:
                chunk = await asyncio.wait_for(reader.read(65536),
                                               max(deadline - time.monotonic(), 0))
            except (OSError, ssl.SSLError) as exc:
                raise FlowClosed(classify_error(exc), describe(exc)) from exc
            conn.receive_data(chunk)  # b"": the end of the stream
        elif isinstance(event, h11.Response):
            status = event.status_code
            received = {k.decode().lower(): v.decode(errors="replace") for k, v in event.headers}
        elif isinstance(event, h11.Data):
            content += event.data
            if len(content) > max_response:
                raise ValueError(f"response larger than {max_response} bytes")
        elif isinstance(event, h11.EndOfMessage):
            return status, received, bytes(content)
        elif isinstance(event, h11.ConnectionClosed):
            raise FlowClosed(Failure.EOF, "the server closed the connection")
