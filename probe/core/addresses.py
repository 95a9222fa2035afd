"""Which addresses the collector may be made to reach on a probe's behalf.

An explicit deny-list, not `ipaddress.is_global` alone: `is_global` admits
multicast, and translation prefixes (NAT64, 6to4, Teredo, IPv4-compatible and
IPv4-mapped IPv6) that lead back into IPv4 space the list refuses, or into a
network the operator cannot see. Used by the test helper (its targets and
TURN peers, `probe.run.helper`), the WebRTC reference peer (the candidates it
will probe) and the `dns` check (answers it may repeat). Pure and small.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# (prefix, why); the registry: IANA IPv4/IPv6 Special-Purpose Address Registries
DENIED: tuple[tuple[Network, str], ...] = tuple((ipaddress.ip_network(prefix), why) for
                                                 prefix, why in (
    ("0.0.0.0/8", "this-network"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "cgnat"),  # RFC 6598 shared address space
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "ietf-protocol"),
    ("192.0.2.0/24", "documentation"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),  # includes 255.255.255.255
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::/96", "ipv4-compatible"),  # deprecated (RFC 4291 2.5.5.1)
    ("::ffff:0:0/96", "ipv4-mapped"),
    ("64:ff9b::/96", "nat64"),  # RFC 6052
    ("64:ff9b:1::/48", "nat64"),  # RFC 8215 local-use translation
    ("100::/64", "discard"),
    ("2001::/32", "teredo"),
    ("2001:2::/48", "benchmarking"),
    ("2001:db8::/32", "documentation"),
    ("2001:10::/28", "orchid"),
    ("2002::/16", "6to4"),
    ("3fff::/20", "documentation"),  # RFC 9637
    ("fc00::/7", "unique-local"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    ("ff00::/8", "multicast"),
))


def parse_prefixes(text: str | Iterable[str] | None) -> tuple[Network, ...]:
    """Operator-set prefixes (`10.1.0.0/16, 2001:db8:1::/48`); ValueError names a bad one."""
    if text is None:
        return ()
    parts = text.split(",") if isinstance(text, str) else list(text)
    out: list[Network] = []
    for part in (p.strip() for p in parts):
        if not part:
            continue
        try:
            out.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"{part!r} is not an address prefix") from None
    return tuple(out)


def refusal(address: str | Address, extra: Sequence[Network] = ()) -> str | None:
    """Why the collector must not reach `address` (a short name), or None when
    it may. Anything that is not an IP address is refused."""
    try:
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    except ValueError:
        return "not-an-address"
    for network, why in DENIED:
        if ip.version == network.version and ip in network:
            return why
    for network in extra:
        if ip.version == network.version and ip in network:
            return "operator-denied"
    if not ip.is_global:  # whatever the registry adds later
        return "not-global"
    return None


def allowed(address: str, extra: Sequence[Network] = ()) -> bool:
    return refusal(address, extra) is None
