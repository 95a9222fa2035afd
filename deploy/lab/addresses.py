"""The lab's address plan and names.

Every lab has the same addresses: they live only inside its own namespaces, so
two labs (different prefixes) never see each other's.

- Probe hosts: one /24 per link type, the link's access router .1, probe .2
  (RFC 1918); access router <-> router: 10.201.L.0/30.
- Router <-> core router <-> internet: 10.200.0.0/30 and 10.200.0.4/30.
- Reference services: one address each from 192.88.99.0/24, the deprecated
  6to4 relay anycast prefix (RFC 7526). It no longer names any real service,
  yet counts as global (`ipaddress.is_global`), so the probe's bogon test
  treats the lab's answers as public ones, exactly as on the internet; only a
  lying resolver's private answer is a bogon.
"""

from __future__ import annotations

from probe.core.record import LinkType

LINKS: dict[LinkType, int] = {LinkType.CELLULAR: 1, LinkType.ADSL: 2, LinkType.WIFI: 3}
SHORT: dict[LinkType, str] = {LinkType.CELLULAR: "cell", LinkType.ADSL: "adsl",
                              LinkType.WIFI: "wifi"}

# router <-> core <-> internet, two /30s; access routers <-> router, a /30 per link
ROUTER_TRANSIT = "10.200.0.1"  # the router's side toward the core
CORE_DOWN = "10.200.0.2"
CORE_UP = "10.200.0.5"
INET_TRANSIT = "10.200.0.6"
TRANSIT_PREFIX = 30
LAB_NETWORK = "10.200.0.0/16"
ACCESS_NETWORK = "10.201.0.0/16"

# hops from a probe host, as a TTL-limited packet counts them (docs/lab.md):
# its access router, the censoring router, a core router, then the internet
HOPS = {"access": 1, "censor": 2, "core": 3, "internet": 4}

# one address per reference service, on the internet namespace's loopback
SERVICES: dict[str, str] = {
    "echo": "192.88.99.7",       # UDP echo on port 7: the peer TURN relays data to
    "chat": "192.88.99.10",      # lumen messaging: TCP 5222, TLS 443
    "relay": "192.88.99.11",     # lumen calls: coturn STUN/TURN 3478 UDP/TCP, 5349 TLS
    "msg": "192.88.99.20",       # parla messaging: TLS 443
    "sip": "192.88.99.21",       # parla calls: Kamailio 5060 UDP/TCP, 5061 TLS
    "stun": "192.88.99.22",      # parla calls: STUN on 3478 and 19302
    "ns": "192.88.99.53",        # authoritative DNS for lab., the probes' resolver
    "liar": "192.88.99.54",      # the lying resolver the router redirects DNS to
    "impostor": "192.88.99.66",  # a TLS server whose certificate names another host
    "collector": "192.88.99.80", # voipwatch-collector: upload, control, dashboard
}
COLLECTOR_PORT = 80

# the lab's zone: every name a catalogue or scenario may use
ZONE: dict[str, str] = {
    "echo.lab": SERVICES["echo"],
    "chat.lumen.lab": SERVICES["chat"],
    "relay.lumen.lab": SERVICES["relay"],
    "msg.parla.lab": SERVICES["msg"],
    "sip.parla.lab": SERVICES["sip"],
    "stun.parla.lab": SERVICES["stun"],
    "ns.lab": SERVICES["ns"],
    "impostor.lab": SERVICES["impostor"],
    "collector.lab": SERVICES["collector"],
}


def link_number(link: LinkType) -> int:
    try:
        return LINKS[link]
    except KeyError:
        raise ValueError(f"the lab has no {link} link (it has: "
                         f"{', '.join(str(k) for k in LINKS)})") from None


def router_address(link: LinkType) -> str:
    return f"10.200.{link_number(link)}.1"


def probe_address(link: LinkType) -> str:
    return f"10.200.{link_number(link)}.2"


def access_uplink(link: LinkType) -> tuple[str, str]:
    """(the router's side, the access router's side) of the link's /30."""
    number = link_number(link)
    return f"10.201.{number}.1", f"10.201.{number}.2"


def link_subnet(link: LinkType) -> str:
    return f"10.200.{link_number(link)}.0/24"


def resolver() -> str:
    return SERVICES["ns"]


def collector_url() -> str:
    return f"http://{SERVICES['collector']}:{COLLECTOR_PORT}/"


def resolve(host: str) -> str:
    """A lab name's address (an IP literal passes through)."""
    import ipaddress

    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        return ZONE[host.lower().rstrip(".")]
    except KeyError:
        raise ValueError(f"{host!r} is not a lab name (known: {', '.join(sorted(ZONE))})") \
            from None
