"""The lab's DNS: an authoritative server for `lab.` and a lying resolver.

One process serves both from a JSON config (`python -m deploy.lab.dns CONFIG`):

    {"zone": {"chat.lumen.lab": "192.88.99.10", ...},
     "listen": [{"address": "192.88.99.53", "port": 53, "role": "authoritative"},
                {"address": "192.88.99.54", "port": 53, "role": "liar"}],
     "views": [{"source": "10.200.1.0/24", "lies": {"chat.lumen.lab": "nxdomain"}}]}

The router redirects a link type's port 53 to the liar (DNAT keeps the
source address), so the liar picks the view of the asking probe's subnet: a
lie is `nxdomain`, `servfail`, `refused`, `empty`, `drop` (no answer) or a list
of addresses; `*.name` covers the subdomains. Names it does not lie about get
the truth. SIGHUP re-reads the config, so scenarios switch without a restart.
UDP and TCP (RFC 1035 section 4.2), A and AAAA only.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import signal
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

LIES = ("nxdomain", "servfail", "refused", "empty", "drop")
TTL = 60


@dataclass
class Config:
    zone: dict[str, str]
    listen: list[dict[str, Any]]
    views: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, dict[str, Any]]] = \
        field(default_factory=list)
    generation: int = 0

    @classmethod
    def load(cls, path: Path) -> Config:
        data = json.loads(path.read_text())
        views = [(ipaddress.ip_network(v["source"]), {k.lower(): a for k, a in v["lies"].items()})
                 for v in data.get("views", [])]
        config = cls({k.lower(): v for k, v in data["zone"].items()}, data["listen"], views,
                     int(data.get("generation", 0)))
        # tells whoever wrote the config that these answers are now being served
        loaded_marker(path).write_text(str(config.generation))
        return config


def loaded_marker(config_path: Path) -> Path:
    return config_path.with_name(config_path.name + ".loaded")


def write_config(path: Path, zone: dict[str, str], listen: list[dict[str, Any]],
                 views: dict[str, dict[str, Any]], generation: int = 0) -> None:
    """Write a config atomically (the daemon may be re-reading it)."""
    text = json.dumps({"zone": zone, "listen": listen, "generation": generation,
                       "views": [{"source": s, "lies": lies} for s, lies in views.items()]},
                      indent=1)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _lie_for(lies: dict[str, Any], name: str) -> Any:
    if name in lies:
        return lies[name]
    labels = name.split(".")
    for i in range(1, len(labels)):
        wildcard = "*." + ".".join(labels[i:])
        if wildcard in lies:
            return lies[wildcard]
    return None


class Server:
    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self.config = Config.load(config_path)

    def reload(self) -> None:
        try:
            self.config = Config.load(self.config_path)
        except (OSError, ValueError, KeyError) as exc:  # keep serving the old one
            print(f"lab dns: config not reloaded: {exc}", file=sys.stderr, flush=True)
        else:
            print("lab dns: config reloaded", file=sys.stderr, flush=True)

    def answer(self, wire: bytes, role: str, source: str) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
            question = query.question[0]
        except Exception:  # garbage gets no answer, as from a real server
            return None
        name = question.name.to_text().rstrip(".").lower()
        behaviour: Any = None
        if role == "liar":
            address = ipaddress.ip_address(source)
            for network, lies in self.config.views:
                if address in network:
                    behaviour = _lie_for(lies, name)
                    break
        if behaviour is None:
            behaviour = self._truth(name)
        if behaviour == "drop":
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA | dns.flags.RA
        if behaviour in ("nxdomain", "servfail", "refused"):
            response.set_rcode({"nxdomain": dns.rcode.NXDOMAIN, "servfail": dns.rcode.SERVFAIL,
                                "refused": dns.rcode.REFUSED}[behaviour])
        elif isinstance(behaviour, list):
            wanted = "AAAA" if question.rdtype == dns.rdatatype.AAAA else "A"
            addresses = [a for a in behaviour if (":" in a) == (wanted == "AAAA")]
            if addresses and question.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                response.answer.append(
                    dns.rrset.from_text_list(question.name, TTL, "IN", wanted, addresses))
        return response.to_wire()

    def _truth(self, name: str) -> Any:
        if name in self.config.zone:
            return [self.config.zone[name]]
        if name == "lab" or name.endswith(".lab"):
            return "nxdomain"
        return "refused"  # not a recursive resolver: the lab has no internet


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: Server, role: str) -> None:
        self.server, self.role = server, role

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # the datagram endpoint's

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = self.server.answer(data, self.role, addr[0])
        if reply is not None:
            self.transport.sendto(reply, addr)


async def _tcp(server: Server, role: str, reader: asyncio.StreamReader,
               writer: asyncio.StreamWriter) -> None:
    peer = writer.get_extra_info("peername")[0]
    try:
        while True:
            length = struct.unpack("!H", await reader.readexactly(2))[0]
            reply = server.answer(await reader.readexactly(length), role, peer)
            if reply is None:
                continue
            writer.write(struct.pack("!H", len(reply)) + reply)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(config_path: Path) -> None:
    server = Server(config_path)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, server.reload)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    closers = []
    for spec in server.config.listen:
        address, port, role = spec["address"], int(spec.get("port", 53)), spec["role"]
        transport, _ = await loop.create_datagram_endpoint(
            lambda role=role: _Udp(server, role), local_addr=(address, port))
        closers.append(transport)
        tcp = await asyncio.start_server(
            lambda r, w, role=role: _tcp(server, role, r, w), address, port)
        closers.append(tcp)
    print("ready", flush=True)
    await stop.wait()
    for closer in closers:
        closer.close()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m deploy.lab.dns CONFIG.json", file=sys.stderr)
        return 2
    asyncio.run(serve(Path(argv[0])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
