"""A mirror of a real catalogue (the default one) inside the lab's internet.

The probe runs the catalogue unchanged, yet none of its traffic may leave the
machine. So, in the internet namespace only:

- every host name gets an address of its own from 192.88.99.128/25 (the
  lab's public-looking but unused prefix, see `addresses`), which the lab's
  authoritative DNS answers; names outside the catalogue fail as before;
- every IP literal of the catalogue (a relay address from a capture) is put
  on the namespace's loopback: it exists inside the lab only, and the
  router's default route already leads there;
- nftables DNAT (prerouting for the probes, output for the collector's test
  helper, which runs in the same namespace) sends each (address, protocol,
  port) an endpoint uses to the lab server that speaks its protocol: STUN and
  TURN to coturn, SIP to Kamailio, TLS to a listener whose certificate names
  every catalogue host, plain TCP to a listener that holds the connection.

`throttle` and `webrtc` endpoints whose URL is the catalogue's placeholder
need nothing: it stands for the run's collector (probe.checks.collector_url),
the lab's, whose reference peer answers the calls; the STUN servers their ICE
goes through are mirrored like `stun` endpoints. A webrtc endpoint with a real
offer URL is not mirrored.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from deploy.lab.addresses import SERVICES, ZONE
from deploy.lab.shell import UsageError, run
from deploy.lab.topology import Topology
from probe.catalogue import DEFAULT_CATALOGUE  # the one the probe ships
from probe.checks.collector_url import is_placeholder

TABLE = "voipwatch_mirror"
NAME_POOL = ipaddress.ip_network("192.88.99.128/25")
# the mirror's own listeners, held by the lab's TLS server process
FRONT = "192.88.99.90"
FRONT_TLS_PORT = 443
FRONT_TCP_PORT = 5222
LAB_HOSTS = {*ZONE, *SERVICES.values()}
# addresses a literal must not take: the lab's own
RESERVED = (ipaddress.ip_network("192.88.99.0/24"), ipaddress.ip_network("10.200.0.0/16"))


@dataclass(frozen=True)
class Target:
    """Where a kind of endpoint is served: (address, protocol, port) and a rank
    deciding who serves an (address, protocol, port) several kinds use."""

    address: str
    proto: str
    port: int
    rank: int
    tls: bool = False


# (check, transport) -> the lab server that speaks it
TARGETS: dict[tuple[str, str], Target] = {
    ("tcp", "tcp"): Target(FRONT, "tcp", FRONT_TCP_PORT, 0),
    ("tls", "tls"): Target(FRONT, "tcp", FRONT_TLS_PORT, 1, tls=True),
    **{(check, "udp"): Target(SERVICES["relay"], "udp", 3478, 2) for check in ("stun", "turn")},
    **{(check, "tcp"): Target(SERVICES["relay"], "tcp", 3478, 2) for check in ("stun", "turn")},
    **{(check, "tls"): Target(SERVICES["relay"], "tcp", 5349, 2, tls=True)
       for check in ("stun", "turn")},
    ("sip", "udp"): Target(SERVICES["sip"], "udp", 5060, 3),
    ("sip", "tcp"): Target(SERVICES["sip"], "tcp", 5060, 3),
    ("sip", "tls"): Target(SERVICES["sip"], "tcp", 5061, 3, tls=True),
}


@dataclass(frozen=True)
class Forward:
    address: str  # the mirrored address the probe connects to
    proto: str
    port: int
    target: Target

    def rule(self) -> str:
        return (f"ip daddr {self.address} {self.proto} dport {self.port} "
                f"dnat to {self.target.address}:{self.target.port}")


@dataclass(frozen=True)
class Mirror:
    catalogue: Path
    zone: dict[str, str]  # name -> mirror address
    literals: tuple[str, ...]
    tls_names: tuple[str, ...]  # every name a certificate must carry (hosts and SNIs)
    forwards: tuple[Forward, ...]
    skipped: tuple[str, ...]  # endpoints the mirror cannot serve, each with why

    def addresses(self) -> list[str]:
        """Every address the internet namespace must have for the mirror."""
        return [FRONT, *sorted(set(self.zone.values()), key=ipaddress.ip_address),
                *self.literals]

    def cert_names(self) -> list[str]:
        """What a server certificate must name to pass for every mirrored host:
        each name and SNI (DNS SANs), each literal (IP SANs)."""
        return [*self.tls_names, *self.literals]

    def tls_listeners(self, cert: Any) -> list[dict[str, Any]]:
        """The front listeners, for deploy.lab.tlsserver's config."""
        return [{"address": FRONT, "port": FRONT_TCP_PORT},
                {"address": FRONT, "port": FRONT_TLS_PORT, "cert": str(cert.cert),
                 "key": str(cert.key)}]

    def nft(self) -> str:
        rules = "".join(f"    {f.rule()}\n" for f in self.forwards)
        hooks = "".join(
            f"  chain {hook} {{\n    type nat hook {hook} priority -100; policy accept;\n"
            "    jump forwards\n  }\n" for hook in ("prerouting", "output"))
        # create-then-delete: the script replaces the table whether or not it exists
        return (f"table ip {TABLE} {{ }}\ndelete table ip {TABLE}\n"
                f"table ip {TABLE} {{\n  chain forwards {{\n{rules}  }}\n{hooks}}}\n")


def _host(name: str) -> str:
    return name.lower().rstrip(".")


def _literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


@dataclass(frozen=True)
class IceStun:
    """A `stun:` ICE server of a webrtc endpoint, mirrored as a STUN endpoint."""

    host: str
    port: int
    check: str = "stun"
    transport: str = "udp"
    sni: None = None


def ice_stun_servers(endpoint: Any) -> list[IceStun]:
    """The webrtc endpoint's `stun:host[:port]` URLs (RFC 7064)."""
    found = []
    for server in endpoint.ice_servers:
        for url in (server.urls,) if isinstance(server.urls, str) else server.urls:
            scheme, _, rest = url.partition(":")
            if scheme != "stun":
                continue
            parts = urlsplit("//" + rest.split("?")[0])
            found.append(IceStun(parts.hostname or "", parts.port or 3478))
    return found


def build(catalogue: Any, path: Path = DEFAULT_CATALOGUE) -> Mirror:
    """The mirror of a loaded catalogue (`path` only names it)."""
    endpoints = [(service.id, e) for service in catalogue.services for e in service.endpoints]
    skipped: list[str] = []
    hosts: list[tuple[str, Any]] = []
    for service, endpoint in endpoints:
        if endpoint.check == "webrtc":
            hosts.extend((service, server) for server in ice_stun_servers(endpoint)
                         if _host(server.host) not in ZONE)
            if is_placeholder(endpoint.url) or \
                    _host(urlsplit(endpoint.url).hostname or "") in LAB_HOSTS:
                continue  # the run's collector, or the lab's own: its reference peer answers
            skipped.append(f"{service} webrtc {endpoint.url}: the reference peer's URL is "
                           "not mirrored")
        elif endpoint.check != "throttle" and _host(endpoint.host) not in ZONE:
            hosts.append((service, endpoint))  # (a lab name has its own server already)

    names = sorted({_host(e.host) for _, e in hosts if _literal(e.host) is None})
    pool = [str(a) for a in NAME_POOL.hosts()]
    if len(names) > len(pool):
        raise UsageError(f"{path}: {len(names)} host names, but the mirror has addresses for "
                         f"{len(pool)} only")
    zone = dict(zip(names, pool, strict=False))

    literals: list[str] = []
    for service, endpoint in hosts:
        ip = _literal(endpoint.host)
        if ip is None or str(ip) in literals:
            continue
        if ip.version != 4 or any(ip in net for net in RESERVED):
            raise UsageError(f"{path}: {service} {endpoint.check} {endpoint.host}: the lab "
                             "mirrors public IPv4 literals only (the lab has no IPv6, and "
                             "192.88.99.0/24 and 10.200.0.0/16 are its own)")
        literals.append(str(ip))

    chosen: dict[tuple[str, str, int], Target] = {}
    wanted: list[tuple[str, Any, tuple[str, str, int], Target]] = []
    for service, endpoint in hosts:
        if endpoint.check == "dns":
            continue  # answered by the zone
        target = TARGETS[(endpoint.check, str(endpoint.transport))]
        host = _host(endpoint.host)
        address = str(_literal(host) or zone[host])
        key = (address, target.proto, endpoint.port)
        wanted.append((service, endpoint, key, target))
        if key not in chosen or target.rank > chosen[key].rank:
            chosen[key] = target
    for service, endpoint, key, target in wanted:
        served = chosen[key]
        # a plain connect is served by any TCP listener, a handshake by any TLS one
        if served != target and not (target.rank == 0 or (target.tls and served.tls)):
            skipped.append(f"{service} {endpoint.check} {endpoint.host}:{endpoint.port}: "
                           f"shadowed by another check's server on that port")

    sni = {_host(e.sni) for _, e in hosts if getattr(e, "sni", None)}
    return Mirror(path, zone, tuple(literals), tuple(sorted(set(names) | sni)),
                  tuple(Forward(*key, target) for key, target in sorted(
                      chosen.items(), key=lambda kv: (ipaddress.ip_address(kv[0][0]), kv[0][1:]))),
                  tuple(skipped))


def load(path: Path = DEFAULT_CATALOGUE) -> Mirror:
    from probe.catalogue import load_catalogue

    return build(load_catalogue(path), path)


def install(topology: Topology, mirror: Mirror) -> None:
    """Give the internet namespace the mirror's addresses and forwards."""
    for address in mirror.addresses():
        run(["ip", "-n", topology.inet_ns, "addr", "replace", f"{address}/32", "dev", "lo"])
    run(["nft", "-f", "-"], namespace=topology.inet_ns, input=mirror.nft())
