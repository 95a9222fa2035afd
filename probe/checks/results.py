"""What the checks share: target resolution, opening a flow, and turning the
transport's errors (probe.net.sockets, probe.net.flow) into observations, so every check
names a reset, an ICMP error or a bad certificate alike."""

from __future__ import annotations

import time
from typing import Any

from probe.checks.base import Context, Observation, Operation
from probe.core.errors import ConnectFailed, HandshakeFailed, ResolveError, StepFailed
from probe.core.failures import Failure, classify_error, describe
from probe.core.record import Transport
from probe.dns.resolve import resolve_host
from probe.net.flow import Flow, Framer, Transaction
from probe.net.flow import open_flow as open_transport

_FLOW_OPERATION = {Transport.UDP: Operation.UDP_FLOW, Transport.TCP: Operation.TCP_FLOW,
                   Transport.TLS: Operation.TLS_FLOW}


def flow_operation(transport: Transport) -> Operation:
    """The operation of a flow that ended under us over `transport`."""
    return _FLOW_OPERATION[transport]


def connect_failed(exc: ConnectFailed, **evidence: Any) -> Observation:
    evidence.update({"phase": "connect", "connect_ms": round(exc.elapsed_ms, 3),
                     "error": exc.detail})
    if exc.icmp:
        evidence["icmp"] = exc.icmp.as_evidence()
    return Observation.failed(exc.failure, Operation.TCP_CONNECT, **evidence)


def handshake_failed(exc: HandshakeFailed) -> Observation:
    evidence = dict(exc.evidence)
    evidence.update(phase="handshake", error=exc.detail, handshake_ms=round(exc.elapsed_ms, 3))
    if exc.icmp:
        evidence["icmp"] = exc.icmp.as_evidence()
    observation = Observation.failed(exc.failure, Operation.TLS_HANDSHAKE, **evidence)
    observation.bytes_sent, observation.bytes_received = exc.traffic
    return observation


async def resolve_name(host: str, ctx: Context) -> str:
    """The address to connect to for `host`: the pinned one when the test helper
    pinned the check's targets (ResolveError for a target it did not vet),
    else the first address the run's resolver gives."""
    if ctx.pinned is not None:
        address = ctx.pinned.get(host)
        if address is None:
            raise ResolveError(Failure.DNS_RESOLUTION, f"{host}: not a vetted target")
        return address
    return await resolve_host(host, ctx.resolver, ctx.timeout)


async def resolve(endpoint: Any, ctx: Context) -> tuple[str | None, Observation | None]:
    """(address, None), or (None, an observation saying why the name did not resolve).

    A name that does not resolve is the `dns` check's finding; here it only
    means this check could not be made, so no blocking method is claimed."""
    start = time.perf_counter()
    try:
        return await resolve_name(endpoint.host, ctx), None
    except ResolveError as exc:
        elapsed = round((time.perf_counter() - start) * 1000, 3)
        return None, Observation.failed(exc.failure, Operation.RESOLVE, phase="resolve",
                                        resolve_ms=elapsed, error=str(exc))


async def open_flow(address: str, port: int, transport: Transport, ctx: Context, *,
                    sni: str, deadline: float, framer: Framer) -> Flow:
    """Open a flow, or raise StepFailed with the observation of what went wrong."""
    if ctx.pinned is not None and address not in ctx.pinned.values():
        raise StepFailed(Observation.failed(Failure.DNS_RESOLUTION, Operation.SOCKET,
                                            phase="connect", error="not a vetted address"))
    try:
        flow = await open_transport(address, port, transport, ctx.ssl_context, sni=sni,
                                    deadline=deadline, framer=framer)
        flow.max_payload, flow.max_sends = ctx.udp_max_payload, ctx.max_sends
        return flow
    except ConnectFailed as exc:
        raise StepFailed(connect_failed(exc, **exc.evidence)) from exc
    except HandshakeFailed as exc:
        raise StepFailed(handshake_failed(exc)) from exc
    except OSError as exc:  # no local UDP socket (no route): a local matter, not interference
        raise StepFailed(Observation.failed(classify_error(exc), Operation.SOCKET, phase="connect",
                                           error=describe(exc), address=address,
                                           transport=str(transport))) from exc


async def open_endpoint(endpoint: Any, ctx: Context, framer: Framer) -> tuple[Flow, float]:
    """Resolve the endpoint's host and open a flow to it over its transport:
    (the flow, the check's deadline), or StepFailed with the observation of the
    step that failed."""
    address, failed = await resolve(endpoint, ctx)
    if failed:
        raise StepFailed(failed)
    assert address is not None
    deadline = time.monotonic() + ctx.timeout
    flow = await open_flow(address, endpoint.port, endpoint.transport, ctx,
                           sni=endpoint.sni or endpoint.host, deadline=deadline, framer=framer)
    return flow, deadline


def finish(flow: Flow, observation: Observation) -> Observation:
    """Close the flow; the observation gets its traffic and the flow's evidence."""
    flow.close()
    observation.bytes_sent, observation.bytes_received = flow.traffic()
    for key, value in flow.evidence.items():
        observation.evidence.setdefault(key, value)
    return observation


def unanswered(outcome: Transaction[Any], evidence: dict[str, Any], transport: Transport,
               request: Operation, response: Operation) -> Observation:
    """The observation of a transaction that got no valid reply: the flow was
    closed (RST, ICMP, ...), only forged or garbled answers came (`response`),
    or nothing (`request`)."""
    if outcome.closed is not None:
        closed = outcome.closed
        evidence.update(phase="request", error=closed.detail)
        if closed.icmp:
            evidence["icmp"] = closed.icmp.as_evidence()
        return Observation.failed(closed.failure, flow_operation(transport), **evidence)
    if outcome.anomaly_count:
        failure = Failure.FORGED_RESPONSE if outcome.forged else Failure.PROTOCOL_ERROR
        return Observation.failed(failure, response, phase="response", **evidence)
    return Observation.failed(Failure.GENERIC_TIMEOUT, request, phase="request", **evidence)
