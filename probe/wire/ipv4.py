"""IPv4, TCP and ICMP headers as a raw socket hands them over (RFC 791,
RFC 9293 §3.1, RFC 792): the fields a path trace and an injection test read.
Pure: bytes in, values out, `ValueError` on malformed input."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

TCP, UDP, ICMP = 6, 17, 1
ICMP_UNREACHABLE, ICMP_TIME_EXCEEDED = 3, 11
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
TCP_OPTIONS = {2: "mss", 3: "wscale", 4: "sack_perm", 5: "sack", 8: "ts", 34: "tfo"}


@dataclass(frozen=True)
class Ipv4:
    ttl: int
    ident: int
    protocol: int
    source: str
    destination: str
    payload: bytes


@dataclass(frozen=True)
class TcpSegment:
    source_port: int
    destination_port: int
    seq: int
    ack: int
    flags: int
    window: int
    options: tuple[str, ...]  # option kinds by name, in order (`nop`, `eol` left out)

    @property
    def reset(self) -> bool:
        return bool(self.flags & RST)

    @property
    def syn_ack(self) -> bool:
        return self.flags & (SYN | ACK) == SYN | ACK


@dataclass(frozen=True)
class IcmpError:
    type: int
    code: int
    quoted: Ipv4  # the header of the packet that caused it (and the first 8 bytes after)
    source_port: int  # of the quoted TCP or UDP packet: whose probe this answers
    destination_port: int


def parse_ipv4(data: bytes) -> Ipv4:
    if len(data) < 20 or data[0] >> 4 != 4:
        raise ValueError("not an IPv4 header")
    header = (data[0] & 0x0F) * 4
    if header < 20 or len(data) < header:
        raise ValueError(f"IPv4 header length {header} does not fit {len(data)} bytes")
    total = struct.unpack_from("!H", data, 2)[0]
    ident, ttl, protocol = struct.unpack_from("!H", data, 4)[0], data[8], data[9]
    source = str(ipaddress.IPv4Address(data[12:16]))
    destination = str(ipaddress.IPv4Address(data[16:20]))
    end = min(total, len(data)) if total >= header else len(data)
    return Ipv4(ttl, ident, protocol, source, destination, data[header:end])


def parse_tcp(data: bytes) -> TcpSegment:
    if len(data) < 20:
        raise ValueError("a TCP header is at least 20 bytes")
    sport, dport, seq, ack, offset, flags, window = struct.unpack_from("!HHIIBBH", data)
    header = (offset >> 4) * 4
    if header < 20 or header > len(data):
        raise ValueError(f"TCP data offset {header} does not fit {len(data)} bytes")
    return TcpSegment(sport, dport, seq, ack, flags, window, _options(data[20:header]))


def _options(data: bytes) -> tuple[str, ...]:
    names = []
    index = 0
    while index < len(data):
        kind = data[index]
        if kind == 0:  # end of option list
            break
        if kind == 1:  # no-operation
            index += 1
            continue
        if (index + 1 >= len(data) or data[index + 1] < 2
                or index + data[index + 1] > len(data)):
            raise ValueError("a TCP option overruns the header")
        names.append(TCP_OPTIONS.get(kind, f"kind{kind}"))
        index += data[index + 1]
    return tuple(names)


def parse_icmp_error(data: bytes) -> IcmpError | None:
    """An ICMP destination-unreachable or time-exceeded message (the ICMP part
    of a packet, after its IP header); None for any other ICMP message."""
    if len(data) < 8:
        raise ValueError("an ICMP message is at least 8 bytes")
    kind, code = data[0], data[1]
    if kind not in (ICMP_UNREACHABLE, ICMP_TIME_EXCEEDED):
        return None
    quoted = parse_ipv4(data[8:])
    if quoted.protocol not in (TCP, UDP) or len(quoted.payload) < 4:
        raise ValueError("the quoted packet is not TCP or UDP, or is cut short")
    sport, dport = struct.unpack_from("!HH", quoted.payload)
    return IcmpError(kind, code, quoted, sport, dport)
