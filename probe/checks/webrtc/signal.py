"""Signalling for the `webrtc` check: the SDP offer goes to the collector's
reference peer as one signed HTTP/1.1 POST (RFC 9112; headers of probe/core/auth.py).

The connection is opened like every other check's (`probe.checks.results.open_flow`):
the name resolves through the run's resolver, and a reset, a timeout, an
ICMP error or a bad certificate becomes the same observation the `tcp` and
`tls` checks would make. HTTP itself is h11's (a dependency of httpx).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import h11

import probe
from probe.checks.base import Context, Observation, Operation, carried
from probe.checks.results import flow_operation, open_flow, resolve
from probe.core.auth import sign_request
from probe.core.errors import FlowClosed, StepFailed
from probe.core.failures import Failure, classify_error, describe
from probe.core.record import Transport
from probe.net.flow import Flow

MAX_RESPONSE = 256 * 1024


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    elapsed_ms: float
    evidence: dict[str, Any] = field(default_factory=dict)  # the connection's (address, tls)
    traffic: tuple[int, int] = (0, 0)


def _no_framing(data: bytes) -> int | None:
    return None  # h11 frames the HTTP messages


async def post(endpoint: Any, body: bytes, ctx: Context, deadline: float) -> Reply:
    """POST `body` (JSON) to `endpoint.url`, signed with the probe's key."""
    address, failed = await resolve(endpoint, ctx)
    if failed:
        raise StepFailed(failed)
    assert address is not None
    parts = urlsplit(endpoint.url)
    transport = Transport.TLS if parts.scheme == "https" else Transport.TCP
    start = time.perf_counter()
    try:
        flow = await open_flow(address, endpoint.port, transport, ctx, sni=endpoint.host,
                               deadline=deadline, framer=_no_framing)
    except StepFailed as exc:
        raise StepFailed(carried(exc)) from exc
    try:
        status, headers, content = await _exchange(flow, parts, body, ctx, deadline)
    except (FlowClosed, TimeoutError, h11.ProtocolError, ValueError) as exc:
        flow.close()
        raise StepFailed(_failed(exc, transport, flow)) from exc
    flow.close()
    return Reply(status, headers, content, round((time.perf_counter() - start) * 1000, 3),
                 dict(flow.evidence), flow.traffic())


async def _exchange(flow: Flow, parts: Any, body: bytes, ctx: Context,
                    deadline: float) -> tuple[int, dict[str, str], bytes]:
    assert flow.streams is not None
    path = parts.path or "/"
    target = path + (f"?{parts.query}" if parts.query else "")
    default_port = 443 if parts.scheme == "https" else 80
    host = parts.hostname if (parts.port or default_port) == default_port else parts.netloc
    headers = [("Host", host), ("User-Agent", f"voipwatch-probe/{probe.__version__}"),
               ("Content-Type", "application/json"), ("Content-Length", str(len(body))),
               ("Connection", "close"),
               *sign_request(ctx.signer, "POST", path, body).items()]
    conn = h11.Connection(h11.CLIENT)
    await flow.send(conn.send(h11.Request(method="POST", target=target, headers=headers))
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
            if len(content) > MAX_RESPONSE:
                raise ValueError(f"response larger than {MAX_RESPONSE} bytes")
        elif isinstance(event, h11.EndOfMessage):
            return status, received, bytes(content)
        elif isinstance(event, h11.ConnectionClosed):
            raise FlowClosed(Failure.EOF, "the collector closed the connection")


def _failed(exc: BaseException, transport: Transport, flow: Flow) -> Observation:
    evidence: dict[str, Any] = {"phase": "signalling", "error": describe(exc), **flow.evidence}
    if isinstance(exc, FlowClosed):
        observation = Observation.failed(exc.failure, flow_operation(transport), **evidence)
    elif isinstance(exc, TimeoutError):
        observation = Observation.failed(Failure.GENERIC_TIMEOUT, Operation.WEBRTC_SIGNALLING,
                                         **evidence)
    else:  # a response that is not HTTP: nothing said about the path
        observation = Observation.failed(Failure.PROTOCOL_ERROR, Operation.WEBRTC_SIGNALLING,
                                         **evidence)
    observation.bytes_sent, observation.bytes_received = flow.traffic()
    return observation
