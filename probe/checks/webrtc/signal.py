"""Signalling for the `webrtc` check: the SDP offer goes to the collector's
reference peer as one signed HTTP/1.1 POST (RFC 9112; headers of probe/core/auth.py).

The connection is opened like every other check's (`probe.checks.results.open_flow`):
the name resolves through the run's resolver, and a reset, a timeout, an
ICMP error or a bad certificate becomes the same observation the `tcp` and
`tls` checks would make. HTTP itself is probe.net.http's (h11).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import h11

from probe.checks.base import Context, Observation, Operation, carried
from probe.checks.results import flow_operation, open_flow, resolve
from probe.core.auth import sign_request
from probe.core.errors import FlowClosed, StepFailed
from probe.core.failures import Failure, describe
from probe.core.record import Transport
from probe.net.flow import Flow
from probe.net.http import exchange

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
    headers = {"Content-Type": "application/json",
               **sign_request(ctx.signer, "POST", parts.path or "/", body)}
    try:
        status, received, content = await exchange(flow, "POST", parts, body, headers,
                                                   deadline, MAX_RESPONSE)
    except (FlowClosed, TimeoutError, h11.ProtocolError, ValueError) as exc:
        flow.close()
        raise StepFailed(_failed(exc, transport, flow)) from exc
    flow.close()
    return Reply(status, received, content, round((time.perf_counter() - start) * 1000, 3),
                 dict(flow.evidence), flow.traffic())


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
