"""TTL-limited probes: where on the path a packet is dropped, reset or
answered with an ICMP error (a traceroute aimed at one blocked endpoint).

The probes are the kernel's own packets with a small IP TTL (`IP_TTL`): a
TCP SYN (a connect), a TLS ClientHello on a connection set up at full TTL,
or a UDP datagram (a STUN Binding request, a SIP OPTIONS). What comes back is
read from two raw receive sockets, one for ICMP and one for TCP, which see
every reply with all its header fields (the IP TTL and ID, the TCP window
and options that tell an injected RST from the server's, `injection` in the
verdict layer). Raw sockets need root or CAP_NET_RAW: without them `Capture`
raises PermissionError, and the caller records the trace as unavailable.

All TTLs go at once, each probe from its own local port (how replies are
told apart), and each waits at most `wait` seconds: a trace takes about that
long. Transport only: it returns what came back, never a judgement, and it
keeps no address but the target's (a reply's source is reduced to
whether it is the target, and whether it is a public address).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from probe.wire.ipv4 import (
    ICMP_TIME_EXCEEDED,
    TCP,
    Ipv4,
    parse_icmp_error,
    parse_ipv4,
    parse_tcp,
)

Payload = Callable[[tuple[str, int]], bytes]  # the UDP probe's datagram, given our address
LATE = 0.05  # seconds the capture stays open after the last probe ended


@dataclass(frozen=True)
class Reply:
    """One packet that came back for a probe."""

    kind: str  # time_exceeded | unreachable | reset | syn_ack | answer (data, a datagram)
    ms: float  # after the probe was sent
    from_target: bool
    public: bool | None  # the sender's address is public (never the address itself)
    icmp: tuple[int, int] | None = None  # type, code
    ip_ttl: int | None = None
    ip_id: int | None = None
    window: int | None = None
    options: tuple[str, ...] | None = None


@dataclass
class Probe:
    ttl: int
    replies: list[Reply] = field(default_factory=list)
    error: str | None = None  # the probe could not be sent (e.g. the connect failed)


class Capture:
    """Raw receive sockets for the replies to our probes, by local port."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.loop = asyncio.get_running_loop()
        self.icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        try:
            self.tcp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
        except OSError:
            self.icmp.close()
            raise
        self.watching: dict[int, tuple[float, list[Reply], asyncio.Event]] = {}
        for sock in (self.icmp, self.tcp):
            sock.setblocking(False)
            self.loop.add_reader(sock.fileno(), self._read, sock)

    def watch(self, port: int, sent_at: float) -> tuple[list[Reply], asyncio.Event]:
        replies: list[Reply] = []
        event = asyncio.Event()
        self.watching[port] = (sent_at, replies, event)
        return replies, event

    def restart(self, port: int, sent_at: float) -> None:
        """The probe proper starts now (a ClientHello after its connect)."""
        _, replies, event = self.watching[port]
        self.watching[port] = (sent_at, replies, event)

    def _read(self, sock: socket.socket) -> None:
        while True:
            try:
                data = sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            try:
                packet = parse_ipv4(data)
                if sock is self.icmp:
                    self._icmp(packet)
                elif packet.protocol == TCP and packet.source == self.target:
                    self._tcp(packet)
            except ValueError:
                continue  # not ours, or garbled: raw sockets see everything

    def _icmp(self, packet: Ipv4) -> None:
        error = parse_icmp_error(packet.payload)
        if error is None or error.quoted.destination != self.target:
            return
        self._add(error.source_port, packet, "time_exceeded" if error.type == ICMP_TIME_EXCEEDED
                  else "unreachable", icmp=(error.type, error.code))

    def _tcp(self, packet: Ipv4) -> None:
        segment = parse_tcp(packet.payload)
        kind = "reset" if segment.reset else "syn_ack" if segment.syn_ack else None
        if kind is not None:
            self._add(segment.destination_port, packet, kind, window=segment.window,
                      options=segment.options)

    def _add(self, port: int, packet: Ipv4, kind: str, **traits: object) -> None:
        found = self.watching.get(port)
        if found is None:
            return
        sent_at, replies, event = found
        replies.append(Reply(kind, round((time.monotonic() - sent_at) * 1000, 2),
                             packet.source == self.target, _public(packet.source),
                             ip_ttl=packet.ttl, ip_id=packet.ident, **traits))  # type: ignore[arg-type]
        event.set()

    def close(self) -> None:
        for sock in (self.icmp, self.tcp):
            with contextlib.suppress(Exception):
                self.loop.remove_reader(sock.fileno())
            sock.close()


def _public(address: str) -> bool:
    return ipaddress.ip_address(address).is_global


def _socket(kind: int, ttl: int | None = None) -> tuple[socket.socket, int]:
    sock = socket.socket(socket.AF_INET, kind)
    sock.setblocking(False)
    if ttl is not None:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
    sock.bind(("0.0.0.0", 0))
    return sock, sock.getsockname()[1]


async def _settle(replies: list[Reply], event: asyncio.Event, wait: float,
                  done: Callable[[], bool] = lambda: False) -> None:
    """Wait for a reply that ends the probe (anything but a SYN-ACK of the set-up)."""
    deadline = time.monotonic() + wait
    while not done() and not any(r.kind != "syn_ack" for r in replies):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        event.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), remaining)


async def _syn(capture: Capture, address: str, port: int, ttl: int, wait: float) -> Probe:
    """A SYN with this TTL; a SYN-ACK is the server's answer (the probe is then closed)."""
    sock, local = _socket(socket.SOCK_STREAM, ttl)
    replies, event = capture.watch(local, time.monotonic())
    probe = Probe(ttl, replies)  # the live list: a reply read a moment late still counts
    try:
        sock.connect_ex((address, port))  # the kernel sends the SYN (and its retransmission)
        await _settle(replies, event, wait, lambda: any(r.kind == "syn_ack" for r in replies))
    finally:
        sock.close()
    return probe


async def _hello(capture: Capture, address: str, port: int, ttl: int, wait: float,
                 hello: bytes) -> Probe:
    """A connection at full TTL (its SYN-ACK is the server's, to compare a RST
    with), then the ClientHello with this TTL."""
    loop = asyncio.get_running_loop()
    sock, local = _socket(socket.SOCK_STREAM)
    replies, event = capture.watch(local, time.monotonic())
    probe = Probe(ttl, replies)
    try:
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (address, port)), wait)
        except (OSError, TimeoutError) as exc:
            probe.error = f"connect: {type(exc).__name__}"
            return probe
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        began = time.monotonic()
        capture.restart(local, began)
        await loop.sock_sendall(sock, hello)
        answered = loop.create_future()

        def readable() -> None:
            if not answered.done():
                answered.set_result(None)
                event.set()

        loop.add_reader(sock.fileno(), readable)
        try:
            await _settle(replies, event, wait, answered.done)
        finally:
            loop.remove_reader(sock.fileno())
        if answered.done():
            with contextlib.suppress(OSError):  # a RST makes the read fail: the capture has it
                if sock.recv(1, socket.MSG_PEEK):
                    replies.append(Reply("answer", round((time.monotonic() - began) * 1000, 2),
                                         True, _public(address)))
    finally:
        sock.close()
    return probe


async def _datagram(capture: Capture, address: str, port: int, ttl: int, wait: float,
                    payload: Payload) -> Probe:
    loop = asyncio.get_running_loop()
    sock, local = _socket(socket.SOCK_DGRAM, ttl)
    began = time.monotonic()
    replies, event = capture.watch(local, began)
    probe = Probe(ttl, replies)
    try:
        sock.connect((address, port))
        await loop.sock_sendall(sock, payload(sock.getsockname()[:2]))
        answered = loop.create_future()

        def readable() -> None:
            with contextlib.suppress(OSError):  # an ICMP error: the capture has it
                sock.recv(65535)
                if not answered.done():
                    answered.set_result(None)
                    replies.append(Reply("answer", round((time.monotonic() - began) * 1000, 2),
                                         True, _public(address)))
                    event.set()

        loop.add_reader(sock.fileno(), readable)
        try:
            await _settle(replies, event, wait, answered.done)
        finally:
            loop.remove_reader(sock.fileno())
    except OSError as exc:
        probe.error = type(exc).__name__
    finally:
        sock.close()
    return probe


def client_hello(sni: str) -> bytes:
    """The bytes of a TLS ClientHello for `sni`, as this machine's TLS library
    sends it (no connection: a memory BIO)."""
    context = ssl.create_default_context()
    outgoing = ssl.MemoryBIO()
    tls = context.wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname=sni)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


async def trace(method: str, address: str, port: int, *, max_ttl: int = 12,
                wait: float = 1.5, sni: str | None = None,
                payload: Payload | None = None) -> list[Probe]:
    """One probe per TTL, 1..max_ttl, all at once: `tcp_syn`, `tls_client_hello`
    (needs `sni`) or `udp` (needs `payload`). PermissionError without raw sockets."""
    capture = Capture(address)
    try:
        if method == "tcp_syn":
            probes = [_syn(capture, address, port, ttl, wait) for ttl in range(1, max_ttl + 1)]
        elif method == "tls_client_hello":
            hello = client_hello(sni or address)
            probes = [_hello(capture, address, port, ttl, wait, hello)
                      for ttl in range(1, max_ttl + 1)]
        elif method == "udp":
            assert payload is not None
            probes = [_datagram(capture, address, port, ttl, wait, payload)
                      for ttl in range(1, max_ttl + 1)]
        else:
            raise ValueError(f"no such trace method: {method}")
        found = list(await asyncio.gather(*probes))
        await asyncio.sleep(LATE)  # replies read just after their probe ended
        return found
    finally:
        capture.close()
