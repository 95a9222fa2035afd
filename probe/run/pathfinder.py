"""Where a blocked endpoint is blocked, and whether by injected packets
(`evidence.path`, `evidence.injection`; docs/measurement.md).

Only for an endpoint already found `blocked` (confirmed), only for the
methods a TTL-limited probe can locate, in bounded time (one trace, all TTLs
at once, about `WAIT` seconds), and only with raw sockets (root or
CAP_NET_RAW): otherwise `{status: unavailable}`. The trace's probe is the
blocked packet itself: the SYN for a connection that was reset, dropped or
refused with ICMP; the ClientHello on an established connection for a TLS
handshake that was; a STUN Binding request, or the SIP OPTIONS, over UDP.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import struct
from typing import Any

from probe.core.record import Blocking, Transport
from probe.net.trace import Payload, trace
from probe.verdict.path import injection, locate
from probe.wire.sip import options_request

B = Blocking
SYN_METHODS = {B.TCP_RESET, B.TCP_TIMEOUT, B.ICMP_UNREACHABLE}
HELLO_METHODS = {B.TLS_RESET, B.TLS_TIMEOUT, B.TLS_FAILURE}
UDP_METHODS = {B.STUN_NO_RESPONSE, B.TURN_NO_RESPONSE, B.SIP_NO_RESPONSE, B.ICMP_UNREACHABLE}
TRACED_CHECKS = {"tcp", "tls", "stun", "turn", "sip"}
MAX_TTL = 16
WAIT = 1.5  # seconds each TTL's probe waits for its reply
BOUND = 3 * WAIT + 2  # the whole trace, whatever happens


def method_for(check: str, transport: Transport, blocking: Blocking) -> str | None:
    """The trace that locates this block, or None (not locatable this way)."""
    if check not in TRACED_CHECKS:
        return None
    if transport is Transport.UDP:
        return "udp" if blocking in UDP_METHODS else None
    if blocking in SYN_METHODS:
        return "tcp_syn"
    if blocking in HELLO_METHODS:
        return "tls_client_hello"
    return None


def _payload(endpoint: Any) -> Payload:
    if endpoint.check == "sip":
        host = endpoint.host
        uri = getattr(endpoint, "uri", None) or f"sip:{host}:{endpoint.port}"

        def sip(local: tuple[str, int]) -> bytes:
            token = os.urandom(6).hex()
            return options_request(uri=uri, transport="UDP", local=local,
                                   branch=f"z9hG4bK{token}", from_tag=token,
                                   call_id=f"{token}@{local[0]}")
        return sip

    def binding(local: tuple[str, int]) -> bytes:  # RFC 8489 §5: a Binding request
        return struct.pack("!HHI", 0x0001, 0, 0x2112A442) + os.urandom(12)
    return binding


async def locate_block(endpoint: Any, address: str | None,
                       blocking: Blocking) -> dict[str, Any] | None:
    """`{path, injection}` for the record's evidence, or None when this block
    is not one a trace locates."""
    transport = endpoint.transport_name
    method = method_for(endpoint.check, transport, blocking)
    if method is None or not address:
        return None
    if ipaddress.ip_address(address).version != 4:
        return {"path": {"status": "unavailable", "reason": "IPv6 is not traced"}}
    try:
        probes = await asyncio.wait_for(
            trace(method, address, endpoint.port, max_ttl=MAX_TTL, wait=WAIT,
                  sni=getattr(endpoint, "sni", None) or endpoint.host,
                  payload=_payload(endpoint)), BOUND)
    except PermissionError:
        unavailable = {"status": "unavailable", "reason": "raw sockets need root or CAP_NET_RAW"}
        return {"path": unavailable, "injection": unavailable}
    except TimeoutError:
        return {"path": {"status": "unavailable", "reason": "the trace ran out of time"}}
    found: dict[str, Any] = {"path": {"status": "traced"} | locate(method, probes)}
    injected = injection(method, probes)
    if injected is not None:
        found["injection"] = injected
    return found
