"""The throttling reflector: UDP and TCP endpoints that echo what a registered
probe sends, and account for every packet (docs/throttle.md).

A probe asks for a session on a port (`POST /api/v1/reflector/sessions`); the
reflector opens a listener on that port for it, on the address the request
came in on (or `reflector_address`), so a replay runs on the service's own
port with no per-port configuration. Two sessions on one port share its
listener: each packet carries a token made with its session's key
(`probe/wire/throttle.py`), and the token says which session, flow and
sequence number it is; a source address once matched is tried first. Packets
whose token matches no session are ignored, never echoed.

Per session: packets, bytes and duplicates per flow, each packet's arrival
time (kernel receive timestamps on UDP, SO_TIMESTAMPNS, so a busy collector
does not blur the timing), and bytes per 100 ms slice. Echoes go back only to
the address that created the session (no reflection toward third parties),
and only up to the session's byte budget.

Bounds: sessions at once (in all, and per key), sessions per key per minute,
bytes per session, and a lifetime after which a session is closed and its
listener released. State lives in this process: the media service
(collector/media.py) is that one process when the API runs several workers.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import ipaddress
import logging
import os
import secrets
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from collector.settings import Settings, parse_ports
from probe.core.errors import VoipwatchError
from probe.net.sockets import SO_TIMESTAMPNS, kernel_time
from probe.wire import throttle as wire

log = logging.getLogger(__name__)

SLICE_SECONDS = 0.1
MAX_ARRIVALS = 20_000  # per session: far more than a replay sends (two rounds, ~1,300)
MAX_FLOWS = 8  # per session: a replay has two flows per round, at most two rounds
MAX_SLICES = 6_000  # per flow: 600 s, the longest lifetime allowed
MAX_DATAGRAM = 65_535
READ_BATCH = 256  # datagrams per wake-up, so one busy port cannot starve the loop
RFC4571_HEADER = 2


class ReflectorError(VoipwatchError):
    """A request the reflector refuses: HTTP status, stable code, one sentence."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


@dataclass
class FlowRecord:
    packets: int = 0
    bytes: int = 0
    duplicates: int = 0
    echoed: int = 0
    arrivals: dict[int, float] = field(default_factory=dict)  # seq -> seconds since origin
    slices: list[int] = field(default_factory=list)

    def add(self, seq: int, size: int, at: float, keep: bool) -> bool:
        """Account a packet; its arrival time only while `keep`. Whether it was new."""
        self.packets += 1
        self.bytes += size
        if seq in self.arrivals:
            self.duplicates += 1
            return False
        if keep:
            self.arrivals[seq] = at
        index = int(at / SLICE_SECONDS)
        if index < MAX_SLICES:
            self.slices.extend([0] * (index + 1 - len(self.slices)))
            self.slices[index] += size
        return keep


@dataclass
class Session:
    id: str
    key_id: str
    key: bytes
    client_ip: str
    transport: str
    address: str
    port: int
    expires: float  # monotonic
    max_bytes: int
    echo_any_source: bool
    origin: float | None = None  # receive time of the first packet (time.time() clock)
    flows: dict[int, FlowRecord] = field(default_factory=dict)
    bytes_in: int = 0
    bytes_out: int = 0
    over_budget: int = 0
    echo_refused: int = 0
    echo_failed: int = 0
    over_cap: int = 0  # packets of flows beyond MAX_FLOWS, or arrivals beyond MAX_ARRIVALS
    arrivals: int = 0
    closed: bool = False

    def account(self, attributed: wire.Attributed, size: int, at: float) -> bool:
        """Account a packet; False when it is beyond the session's caps (not echoed)."""
        record = self.flows.get(attributed.flow)
        if record is None:
            if len(self.flows) >= MAX_FLOWS:
                self.over_cap += 1
                return False
            record = self.flows[attributed.flow] = FlowRecord()
        if self.origin is None:
            self.origin = at
        self.bytes_in += size
        if record.add(attributed.seq, size, max(at - self.origin, 0.0),
                      keep=self.arrivals < MAX_ARRIVALS):
            self.arrivals += 1
        return True

    def may_echo(self, source_ip: str, size: int) -> bool:
        if not self.echo_any_source and not _same_ip(source_ip, self.client_ip):
            self.echo_refused += 1
            return False
        return self.bytes_out + size <= self.max_bytes

    def report(self) -> dict[str, Any]:
        flows = {}
        for number, record in sorted(self.flows.items()):
            flows[str(number)] = {
                "name": wire.flow_name(number), "round": number // 2,
                "packets": record.packets, "bytes": record.bytes,
                "duplicates": record.duplicates, "echoed": record.echoed,
                "arrivals": [[seq, round(at * 1000, 3)] for seq, at in record.arrivals.items()],
                "slices": record.slices,
            }
        return {"id": self.id, "transport": self.transport, "port": self.port,
                "slice_ms": round(SLICE_SECONDS * 1000), "flows": flows,
                "bytes_received": self.bytes_in, "bytes_echoed": self.bytes_out,
                "over_budget": self.over_budget, "over_cap": self.over_cap,
                "echo_refused": self.echo_refused,
                "echo_failed": self.echo_failed, "closed": self.closed}


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def _same_ip(a: str, b: str) -> bool:
    try:
        x, y = ipaddress.ip_address(a), ipaddress.ip_address(b)
    except ValueError:
        return a == b
    if isinstance(x, ipaddress.IPv6Address) and x.ipv4_mapped:
        x = x.ipv4_mapped
    if isinstance(y, ipaddress.IPv6Address) and y.ipv4_mapped:
        y = y.ipv4_mapped
    return x == y


class _Listener:
    """A port the reflector serves, shared by the sessions that asked for it."""

    def __init__(self, reflector: Reflector, address: str, port: int) -> None:
        self.reflector = reflector
        self.address, self.port = address, port
        self.sessions: list[Session] = []
        self.by_source: dict[Any, Session] = {}

    def attribute(self, data: bytes, source: Any) -> tuple[Session, wire.Attributed] | None:
        known = self.by_source.get(source)
        candidates = ([known] if known else []) + [s for s in self.sessions if s is not known]
        for session in candidates:
            found = wire.find(session.key, data)
            if found is not None:
                if len(self.by_source) < 4096:
                    self.by_source[source] = session
                return session, found
        return None

    def remove(self, session: Session) -> None:
        if session in self.sessions:
            self.sessions.remove(session)
        self.by_source = {k: v for k, v in self.by_source.items() if v is not session}

    def close(self) -> None:
        raise NotImplementedError


class _UdpListener(_Listener):
    def __init__(self, reflector: Reflector, address: str, port: int) -> None:
        super().__init__(reflector, address, port)
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self.sock.setblocking(False)
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            self.sock.bind((address, port))
        except OSError:
            self.sock.close()
            raise
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        for _ in range(READ_BATCH):
            try:
                data, ancillary, _flags, source = self.sock.recvmsg(MAX_DATAGRAM, 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an ICMP error for an earlier echo: nothing to read
                continue
            self._datagram(data, source, kernel_time(ancillary))

    def _datagram(self, data: bytes, source: Any, at: float) -> None:
        found = self.attribute(data, source)
        if found is None:
            return
        session, attributed = found
        if session.bytes_in + len(data) > session.max_bytes:
            session.over_budget += 1
            return
        if not session.account(attributed, len(data), at):
            return
        if session.may_echo(source[0], len(data)):
            try:
                self.sock.sendto(data, source)
            except OSError:  # a full buffer or an ICMP error: the probe sees it as loss
                session.echo_failed += 1
                return
            session.bytes_out += len(data)
            session.flows[attributed.flow].echoed += 1

    def close(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()



class _TcpListener(_Listener):
    """RFC 4571 framing (a 2-byte length before each packet), one flow per
    connection. Connections are capped per listener and per source address,
    and one that sends no valid first frame in time is closed."""

    server: asyncio.base_events.Server

    @classmethod
    async def open(cls, reflector: Reflector, address: str, port: int) -> _TcpListener:
        self = cls(reflector, address, port)
        self.tasks: set[asyncio.Task[None]] = set()
        self.per_source: dict[str, int] = {}
        self.server = await asyncio.start_server(self._connection, address, port,
                                                 reuse_address=True)
        return self

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        settings = self.reflector.settings
        peer = writer.get_extra_info("peername")
        source = str(peer[0]) if peer else "-"
        if (len(self.tasks) >= settings.reflector_connections_per_listener
                or self.per_source.get(source, 0) >= settings.reflector_connections_per_source):
            writer.transport.abort()
            return
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        self.per_source[source] = self.per_source.get(source, 0) + 1
        try:
            await self._serve(reader, writer, peer, settings.reflector_first_frame_seconds)
        except (asyncio.IncompleteReadError, ConnectionError, OSError, TimeoutError):
            pass
        finally:
            writer.close()
            self.per_source[source] -= 1
            if not self.per_source[source]:
                del self.per_source[source]
            if task is not None:
                self.tasks.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     peer: Any, first_frame_seconds: float) -> None:
        session: Session | None = None
        while True:
            if session is None:  # the first frame, with a valid token, or goodbye
                header = await asyncio.wait_for(reader.readexactly(RFC4571_HEADER),
                                                first_frame_seconds)
            else:
                header = await reader.readexactly(RFC4571_HEADER)
            (length,) = struct.unpack("!H", header)
            if session is None:
                data = await asyncio.wait_for(reader.readexactly(length), first_frame_seconds)
            else:
                data = await reader.readexactly(length)
            at = time.time()
            if session is None:
                found = self.attribute(data, peer)
                if found is None:
                    return  # not one of ours: hang up
                session, attributed = found
            else:
                attributed = wire.find(session.key, data)
                if attributed is None:
                    continue
            if session.closed:
                return
            if session.bytes_in + len(data) > session.max_bytes:
                session.over_budget += 1
                continue
            if not session.account(attributed, len(data), at):
                continue
            if session.may_echo(peer[0], len(data)):
                writer.write(header + data)
                session.bytes_out += len(data)
                session.flows[attributed.flow].echoed += 1
                await writer.drain()

    def close(self) -> None:
        self.server.close()
        for task in list(self.tasks):
            task.cancel()


class Reflector:
    def __init__(self, settings: Settings, extra_ports: frozenset[int] = frozenset()) -> None:
        self.settings = settings
        self.sessions: dict[str, Session] = {}
        self.listeners: dict[tuple[str, str, int], _Listener] = {}
        # ports sessions may ask for: the setting's, and the catalogue's throttle ports
        self.ports = parse_ports(settings.reflector_ports) | extra_ports

    async def create(self, key_id: str, client_ip: str, local_address: str, port: int,
                     transport: str, duration: float) -> Session:
        settings = self.settings
        if port not in self.ports:
            raise ReflectorError(403, "port_not_allowed", f"the reflector serves only the "
                                 "ports its catalogue and settings name (reflector_ports); "
                                 f"{port} is not one of them")
        if len(self.sessions) >= settings.reflector_max_sessions:
            raise ReflectorError(503, "reflector_busy", "the reflector serves as many sessions "
                                 "as it may; retry in a few seconds")
        mine = sum(s.key_id == key_id for s in self.sessions.values())
        if mine >= settings.reflector_sessions_per_key:
            raise ReflectorError(429, "too_many_sessions", f"this key has {mine} reflector "
                                 "sessions open; close one first")
        address = settings.reflector_address or local_address
        if _is_loopback(address) and not _is_loopback(client_ip):
            # behind a reverse proxy the request arrives on loopback: a probe
            # elsewhere cannot send there
            raise ReflectorError(503, "reflector_address_unset", "the reflector would "
                                 f"listen on {address}, which this probe cannot reach; the "
                                 "operator must set reflector_address (docs/collector.md)")
        listener = await self._listener(transport, address, port)
        session = Session(
            id=secrets.token_urlsafe(12), key_id=key_id, key=os.urandom(wire.KEY_LEN),
            client_ip=client_ip, transport=transport, address=address, port=port,
            expires=time.monotonic() + min(duration, settings.reflector_session_seconds),
            max_bytes=settings.reflector_max_bytes,
            echo_any_source=settings.reflector_echo_any_source)
        self.sessions[session.id] = session
        listener.sessions.append(session)
        asyncio.get_running_loop().call_at(
            asyncio.get_running_loop().time() + (session.expires - time.monotonic()),
            self.close, session.id)
        return session

    async def _listener(self, transport: str, address: str, port: int) -> _Listener:
        key = (transport, address, port)
        if key in self.listeners:
            return self.listeners[key]
        if transport == "tcp" and port == self.settings.port:
            raise ReflectorError(409, "port_unavailable", f"TCP {port} is the collector's own")
        try:
            listener: _Listener
            if transport == "udp":
                listener = _UdpListener(self, address, port)
            else:
                listener = await _TcpListener.open(self, address, port)
        except OSError as exc:
            why = {errno.EADDRINUSE: "another program uses it",
                   errno.EACCES: "ports below 1024 need CAP_NET_BIND_SERVICE",
                   errno.EADDRNOTAVAIL: "the address is not on this host"}.get(
                exc.errno or 0, exc.strerror or str(exc))
            raise ReflectorError(409, "port_unavailable", f"the reflector cannot listen on "
                                 f"{transport.upper()} {port}: {why}") from None
        self.listeners[key] = listener
        return listener

    def get(self, session_id: str, key_id: str) -> Session:
        session = self.sessions.get(session_id)
        if session is None or session.key_id != key_id:
            raise ReflectorError(404, "no_such_session", "no open reflector session with this "
                                 "id for this key (sessions close after their lifetime)")
        return session

    def close(self, session_id: str) -> Session | None:
        session = self.sessions.pop(session_id, None)
        if session is None:
            return None
        session.closed = True
        key = (session.transport, session.address, session.port)
        listener = self.listeners.get(key)
        if listener is not None:
            listener.remove(session)
            if not listener.sessions:
                listener.close()
                del self.listeners[key]
        return session

    def close_all(self) -> None:
        for session_id in list(self.sessions):
            self.close(session_id)


def encode_key(key: bytes) -> str:
    return base64.b64encode(key).decode()
