"""A tiny authoritative DNS server (dnspython) whose answer per name can be
correct, NXDOMAIN, a bogon, empty, SERVFAIL, REFUSED, dropped or garbage."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import cast

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

# behaviours other than a list of addresses
NXDOMAIN, SERVFAIL, REFUSED, EMPTY, DROP, GARBAGE = (
    "nxdomain", "servfail", "refused", "empty", "drop", "garbage")


@dataclass
class DnsServer:
    zone: dict[str, list[str] | str] = field(default_factory=dict)
    default: list[str] | str = NXDOMAIN
    host: str = "127.0.0.1"
    port: int = 0
    queries: list[str] = field(default_factory=list)
    drop_first: int = 0  # lose this many queries before answering (a lossy link)
    lie_first: int = 0  # answer NXDOMAIN to this many queries before the zone's answer
    # name -> answers for its successive queries (the last one repeats): DNS rebinding,
    # or a round-robin server rotating its records
    sequence: dict[str, list[list[str] | str]] = field(default_factory=dict)

    async def __aenter__(self) -> DnsServer:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(self.host, self.port))
        self.port = self.transport.get_extra_info("sockname")[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.transport.close()

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def answer(self, data: bytes) -> bytes | None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        name = question.name.to_text().rstrip(".").lower()
        self.queries.append(name)
        behaviour = self.zone.get(name, self.default)
        if name in self.sequence:
            answers = self.sequence[name]
            behaviour = answers.pop(0) if len(answers) > 1 else answers[0]
        if len(self.queries) <= self.drop_first:
            return None
        if len(self.queries) <= self.drop_first + self.lie_first:
            behaviour = NXDOMAIN
        if behaviour == DROP:
            return None
        if behaviour == GARBAGE:
            return data[:2] + b"\xff" * 7
        response = dns.message.make_response(query)
        if behaviour == NXDOMAIN:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif behaviour == SERVFAIL:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif behaviour == REFUSED:
            response.set_rcode(dns.rcode.REFUSED)
        elif isinstance(behaviour, list):
            wanted = "AAAA" if question.rdtype == dns.rdatatype.AAAA else "A"
            addresses = [a for a in behaviour if (":" in a) == (wanted == "AAAA")]
            if addresses:  # rrset's own ordering would undo a rotation: one rrset per record
                for address in addresses:
                    response.answer.append(dns.rrset.from_text_list(
                        question.name, 60, "IN", wanted, [address]))
        return response.to_wire()


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # the datagram endpoint's

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            reply = self.server.answer(data)
        except Exception:  # a malformed query gets no answer, like a real server
            return
        if reply is not None:
            self.transport.sendto(reply, addr)
