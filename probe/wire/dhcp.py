"""DHCPv4 messages as a client keeps them (dhcpcd's lease files are the raw
BOOTREPLY): the offered address and the options.

RFC 2131 section 2 (the fixed BOOTP header, 236 bytes, then the magic
cookie), RFC 2132 (options: code, length, value; 0 pads, 255 ends;
option 52 overloads the `file` and `sname` fields) and RFC 3396 (a long
option split into several of the same code is their concatenation).
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Final

MAGIC_COOKIE: Final = b"\x63\x82\x53\x63"
HEADER = 236  # op .. file, RFC 2131 figure 1
YIADDR = slice(16, 20)
SNAME = slice(44, 108)
FILE = slice(108, 236)

PAD: Final = 0
END: Final = 255
ROUTER: Final = 3
VENDOR_SPECIFIC: Final = 43  # RFC 2132 section 8.4
OVERLOAD: Final = 52  # RFC 2132 section 9.3: 1 file, 2 sname, 3 both


def parse_options(data: bytes, into: dict[int, bytes]) -> None:
    """Options from one field into `into`, repeated codes concatenated (RFC 3396)."""
    at = 0
    while at < len(data):
        code = data[at]
        if code == PAD:
            at += 1
            continue
        if code == END:
            return
        if at + 1 >= len(data):
            raise ValueError(f"DHCP option {code} at offset {at}: no length byte")
        length = data[at + 1]
        value = data[at + 2:at + 2 + length]
        if len(value) != length:
            raise ValueError(f"DHCP option {code} at offset {at}: {length} bytes announced, "
                             f"{len(value)} present")
        into[code] = into.get(code, b"") + value
        at += 2 + length


def options(message: bytes) -> dict[int, bytes]:
    """Every option of a DHCP message, by code."""
    if len(message) < HEADER + len(MAGIC_COOKIE):
        raise ValueError(f"DHCP message of {len(message)} bytes: shorter than the "
                         f"{HEADER + len(MAGIC_COOKIE)}-byte header and cookie")
    if message[HEADER:HEADER + 4] != MAGIC_COOKIE:
        raise ValueError("DHCP message without the magic cookie 99.130.83.99 (RFC 2131 section 3)")
    found: dict[int, bytes] = {}
    parse_options(message[HEADER + 4:], found)
    overload = found.get(OVERLOAD, b"\x00")[:1]
    if overload in (b"\x01", b"\x03"):
        parse_options(message[FILE], found)
    if overload in (b"\x02", b"\x03"):
        parse_options(message[SNAME], found)
    return found


def your_address(message: bytes) -> IPv4Address:
    """`yiaddr`: the address the server gave this client."""
    if len(message) < HEADER:
        raise ValueError(f"DHCP message of {len(message)} bytes: shorter than the header")
    return IPv4Address(message[YIADDR])


def routers(value: bytes) -> list[IPv4Address]:
    """Option 3: a list of IPv4 addresses (RFC 2132 section 3.5)."""
    if len(value) % 4:
        raise ValueError(f"DHCP router option of {len(value)} bytes: not a list of addresses")
    return [IPv4Address(value[i:i + 4]) for i in range(0, len(value), 4)]
