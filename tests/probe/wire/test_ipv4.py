"""IPv4, TCP and ICMP headers as a raw socket gives them (probe.wire.ipv4)."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probe.wire.ipv4 import parse_icmp_error, parse_ipv4, parse_tcp


def ipv4(payload: bytes, *, ttl: int = 63, ident: int = 0x1234, protocol: int = 6,
         source: bytes = bytes([192, 88, 99, 10]), destination: bytes = bytes([10, 200, 1, 2])
         ) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0x4000, ttl,
                       protocol, 0, source, destination) + payload


def tcp(flags: int, *, options: bytes = b"", window: int = 0) -> bytes:
    offset = (20 + len(options)) // 4
    return struct.pack("!HHIIBBHHH", 5222, 40000, 1, 2, offset << 4, flags, window, 0, 0) \
        + options


def test_an_injected_rst() -> None:
    packet = parse_ipv4(ipv4(tcp(0x14)))
    assert (packet.ttl, packet.ident, packet.protocol, packet.source) == (63, 0x1234, 6,
                                                                          "192.88.99.10")
    segment = parse_tcp(packet.payload)
    assert segment.reset and not segment.syn_ack
    assert (segment.source_port, segment.destination_port, segment.window,
            segment.options) == (5222, 40000, 0, ())


def test_a_syn_ack_and_its_options() -> None:
    options = bytes([2, 4, 5, 0xb4, 4, 2, 8, 10]) + bytes(8) + bytes([1, 3, 3, 7])
    segment = parse_tcp(tcp(0x12, options=options, window=65160))
    assert segment.syn_ack and segment.options == ("mss", "sack_perm", "ts", "wscale")


def test_an_icmp_time_exceeded_quotes_our_probe() -> None:
    quoted = ipv4(struct.pack("!HH", 40000, 3478) + bytes(4), protocol=17, ttl=1,
                  source=bytes([10, 200, 1, 2]), destination=bytes([192, 88, 99, 11]))
    error = parse_icmp_error(bytes([11, 0, 0, 0, 0, 0, 0, 0]) + quoted)
    assert error is not None
    assert (error.type, error.code, error.source_port, error.destination_port) == (
        11, 0, 40000, 3478)
    assert error.quoted.destination == "192.88.99.11"
    assert parse_icmp_error(bytes([0, 0, 0, 0, 0, 0, 0, 0])) is None  # an echo reply


@pytest.mark.parametrize("data, message", [
    (b"\x45" + bytes(10), "not an IPv4 header"),
    (b"\x60" + bytes(39), "not an IPv4 header"),
    (b"\x4f" + bytes(30), "IPv4 header length 60 does not fit 31 bytes"),
])
def test_malformed_ipv4(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_ipv4(data)


def test_malformed_tcp_and_icmp() -> None:
    with pytest.raises(ValueError, match="at least 20 bytes"):
        parse_tcp(bytes(12))
    with pytest.raises(ValueError, match="overruns"):
        parse_tcp(tcp(0x12, options=bytes([2, 9, 0, 0])))
    with pytest.raises(ValueError, match="not TCP or UDP"):
        parse_icmp_error(bytes([3, 13, 0, 0, 0, 0, 0, 0]) + ipv4(bytes(8), protocol=1))


@given(st.binary(max_size=120))
def test_any_bytes_raise_only_value_error(data: bytes) -> None:
    for parse in (parse_ipv4, parse_tcp, parse_icmp_error):
        with contextlib.suppress(ValueError):
            parse(data)
