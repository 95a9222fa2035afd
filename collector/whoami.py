"""A tiny authoritative DNS server for the whoami zone (docs/evidence.md,
"The resolver's network"): any A/AAAA question under `whoami_zone` is
answered with the address the question came from, TTL 0.

The operator delegates the zone to the collector (an NS record for
`whoami.collector.example.org` pointing at it). A probe then resolves a random
name under it through the resolver it measures: the question reaches this
server from that resolver's egress address, which the answer carries back,
and the test helper looks its AS up (`GET /api/v1/attribution?resolver=`).
Nothing is stored. Other names are REFUSED.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

log = logging.getLogger(__name__)


def answer(data: bytes, source: str, zone: dns.name.Name) -> bytes | None:
    """The wire answer to one query from `source` (None: not a query, dropped)."""
    try:
        query = dns.message.from_wire(data)
    except Exception:  # any malformed datagram: no answer
        return None
    if query.flags & dns.flags.QR or len(query.question) != 1:
        return None
    response = dns.message.make_response(query)
    question = query.question[0]
    if not question.name.is_subdomain(zone):
        response.set_rcode(dns.rcode.REFUSED)
        return response.to_wire()
    response.flags |= dns.flags.AA
    address = ipaddress.ip_address(source.split("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    wanted = dns.rdatatype.A if address.version == 4 else dns.rdatatype.AAAA
    if question.rdtype in (wanted, dns.rdatatype.ANY):
        response.answer.append(dns.rrset.from_text(question.name, 0, dns.rdataclass.IN,
                                                   wanted, str(address)))
    return response.to_wire()


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, zone: dns.name.Name) -> None:
        self.zone = zone
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        reply = answer(data, str(addr[0]), self.zone)
        if reply is not None:
            self.transport.sendto(reply, addr)


async def start(zone: str, host: str, port: int) -> asyncio.DatagramTransport:
    """Listen on host:port (UDP; SO_REUSEPORT, so several workers can share it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Protocol(dns.name.from_text(zone)), sock=sock)
    log.info("whoami DNS for %s on %s:%d", zone, host, port)
    return transport
