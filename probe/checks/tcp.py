"""`tcp`: connect with a timeout; tell a RST from a timeout from an ICMP error."""

from __future__ import annotations

from typing import Any

from probe.checks.base import Context, Observation
from probe.checks.results import connect_failed, resolve
from probe.core.errors import ConnectFailed
from probe.net.sockets import tcp_connect, tcp_traffic

NAME = "tcp"
VERSION = "1"
DEFAULT_TIMEOUT = 5.0


async def run(endpoint: Any, ctx: Context) -> Observation:
    address, failed = await resolve(endpoint, ctx)
    if failed:
        return failed
    assert address is not None
    try:
        sock, connect_ms = await tcp_connect(address, endpoint.port, ctx.timeout)
    except ConnectFailed as exc:
        return connect_failed(exc, address=address)
    sent, received = tcp_traffic(sock)
    sock.close()
    observation = Observation.ok(address=address, connect_ms=round(connect_ms, 3))
    observation.bytes_sent, observation.bytes_received = sent + 60, received + 60  # + FIN/ACK
    return observation
