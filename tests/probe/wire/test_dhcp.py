"""DHCP messages as dhcpcd keeps them (RFC 2131, 2132, 3396)."""

from __future__ import annotations

import contextlib
from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probe.wire import dhcp
from tests.support.fakeroot import bootreply

ANDROID = b"ANDROID_METERED"


def test_options_address_and_routers_of_an_android_hotspot_ack() -> None:
    message = bootreply("192.168.43.20", [(53, b"\x05"), (3, IPv4Address("192.168.43.1").packed),
                                          (43, ANDROID)])
    options = dhcp.options(message)
    assert options[dhcp.VENDOR_SPECIFIC] == ANDROID
    assert dhcp.routers(options[dhcp.ROUTER]) == [IPv4Address("192.168.43.1")]
    assert dhcp.your_address(message) == IPv4Address("192.168.43.20")


def test_a_split_option_is_concatenated_and_pads_are_skipped() -> None:  # RFC 3396
    body = bytes([43, 8]) + b"ANDROID_" + bytes([dhcp.PAD, 43, 7]) + b"METERED" + bytes([255])
    assert dhcp.options(bytes(236) + dhcp.MAGIC_COOKIE + body)[43] == ANDROID


def test_overloaded_file_field_carries_options() -> None:  # RFC 2132 section 9.3
    message = bootreply("10.0.0.2", [(52, b"\x01")], file=bytes([43, 15]) + ANDROID + b"\xff")
    assert dhcp.options(message)[43] == ANDROID


@pytest.mark.parametrize(("message", "error"), [
    (b"\x02" * 100, "DHCP message of 100 bytes: shorter than the 240-byte header and cookie"),
    (bytes(236) + b"abcd", "DHCP message without the magic cookie 99.130.83.99"),
    (bytes(236) + dhcp.MAGIC_COOKIE + bytes([43, 20]) + b"short",
     "DHCP option 43 at offset 0: 20 bytes announced, 5 present"),
    (bytes(236) + dhcp.MAGIC_COOKIE + bytes([43]), "DHCP option 43 at offset 0: no length byte"),
])
def test_malformed_messages_are_refused_with_a_reason(message: bytes, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        dhcp.options(message)


def test_a_router_option_must_be_whole_addresses() -> None:
    with pytest.raises(ValueError, match="DHCP router option of 5 bytes"):
        dhcp.routers(b"\x01\x02\x03\x04\x05")


@given(st.binary(max_size=400))
def test_any_bytes_parse_or_raise_value_error(data: bytes) -> None:
    with contextlib.suppress(ValueError):
        dhcp.options(bytes(236) + dhcp.MAGIC_COOKIE + data)
