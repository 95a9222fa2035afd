"""A measured request/response flow to an endpoint over UDP, TCP or TLS: what
the `stun`, `turn` and `sip` checks share. Transport only: failures are raised
as transport errors, and the checks turn them into observations.

`open_flow` connects (connected UDP socket with ICMP errors enabled; TCP
connect telling RST from timeout from ICMP; TLS handshake with SNI) and
raises OSError (no local socket), ConnectFailed or HandshakeFailed.
`exchange` runs one transaction: it (re)transmits on UDP with the RFC 8489
§6.2.1 / RFC 3261 §17.1.2.2 timer (500 ms, doubling), records each attempt's
round-trip time, and keeps every message that did not answer the request as
evidence instead of failing on it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from probe.core.errors import ConnectFailed, FlowClosed, HandshakeFailed, Mismatch
from probe.core.failures import Failure, classify_error, describe
from probe.core.record import Transport
from probe.net.sockets import (
    read_icmp_error,
    tcp_connect,
    tcp_traffic,
    udp_socket,
)

T = TypeVar("T")
Framer = Callable[[bytes], int | None]

RTO = 0.5  # RFC 8489 §6.2.1 and RFC 3261 T1
MAX_SENDS = 7  # RFC 8489 §6.2.1 Rc
MAX_ANOMALIES = 5  # kept in evidence; more are only counted
MIN_WAIT = 0.5  # seconds an answer is always given, however long the connect took
_MAX_BUFFER = 128 * 1024


def retransmit_offsets(timeout: float, rto: float = RTO, limit: int = MAX_SENDS) -> list[float]:
    """When to send, in seconds from the first send: 0, 0.5, 1.5, 3.5, ... (the
    RTO doubles), at most `limit` sends, none after `timeout`."""
    offsets: list[float] = []
    at, interval = 0.0, rto
    while len(offsets) < limit and at < timeout:
        offsets.append(at)
        at += interval
        interval *= 2
    return offsets or [0.0]


def answer_deadline(deadline: float, timeout: float) -> float:
    """The check's deadline, but never less than MIN_WAIT (or the whole timeout,
    if shorter) from now: a slow connect or handshake must not leave a request
    no time to be answered."""
    return max(deadline, time.monotonic() + min(MIN_WAIT, timeout))


def _overhead(address: str) -> int:
    """IP + UDP header bytes per datagram."""
    return 48 if ipaddress.ip_address(address).version == 6 else 28


class Flow:
    """One open flow; `send` and `receive` whole messages, count the traffic."""

    def __init__(self, transport: Transport, address: str, port: int, sock: socket.socket,
                 framer: Framer, streams: tuple[asyncio.StreamReader,
                                                asyncio.StreamWriter] | None = None) -> None:
        self.transport = transport
        self.address, self.port = address, port
        self.sock = sock
        self.framer = framer
        self.streams = streams
        self.buffer = b""
        self.evidence: dict[str, Any] = {}
        self.sent = self.received = 0
        host, port = sock.getsockname()[:2]
        self.local: tuple[str, int] = (host, port)
        self._final: tuple[int, int] | None = None
        # caps the test helper sets (probe.checks.base.Context): None, no cap
        self.max_payload: int | None = None
        self.max_sends: int | None = None

    @property
    def datagram(self) -> bool:
        return self.streams is None

    async def send(self, data: bytes) -> None:
        if self.streams is None:
            if self.max_payload is not None and len(data) > self.max_payload:
                raise FlowClosed(Failure.UNKNOWN, f"a {len(data)}-byte datagram is over this "
                                 f"vantage point's cap of {self.max_payload}")
            try:
                await asyncio.get_running_loop().sock_sendall(self.sock, data)
            except OSError as exc:
                raise self._udp_error(exc) from exc
            self.sent += len(data) + _overhead(self.address)
            return
        writer = self.streams[1]
        try:
            writer.write(data)
            await writer.drain()
        except (OSError, ssl.SSLError) as exc:
            raise FlowClosed(classify_error(exc), describe(exc)) from exc

    async def receive(self, timeout: float) -> bytes:
        """The next message; TimeoutError when none comes in time, FlowClosed when the
        flow ends, ValueError when a byte stream cannot be framed (garbage)."""
        if self.streams is None:
            try:
                data = await asyncio.wait_for(
                    asyncio.get_running_loop().sock_recv(self.sock, 65535), max(timeout, 0))
            except TimeoutError:  # an OSError too: not a socket error here
                raise
            except OSError as exc:
                raise self._udp_error(exc) from exc
            self.received += len(data) + _overhead(self.address)
            return data
        deadline = time.monotonic() + timeout
        while True:
            if self.buffer:
                length = self.framer(self.buffer)
                if length is not None and len(self.buffer) >= length:
                    message, self.buffer = self.buffer[:length], self.buffer[length:]
                    return message
            if len(self.buffer) > _MAX_BUFFER:
                raise ValueError("oversized message in the stream")
            try:
                chunk = await asyncio.wait_for(self.streams[0].read(65536),
                                               max(deadline - time.monotonic(), 0))
            except TimeoutError:
                raise
            except (OSError, ssl.SSLError) as exc:
                raise FlowClosed(classify_error(exc), describe(exc)) from exc
            if not chunk:
                if self.buffer:
                    raise ValueError(f"the connection closed {len(self.buffer)} bytes into "
                                     "a message: truncated")
                raise FlowClosed(Failure.EOF, "the server closed the connection")
            self.buffer += chunk

    def _udp_error(self, exc: OSError) -> FlowClosed:
        icmp = read_icmp_error(self.sock, self.address)
        if icmp is not None:
            return FlowClosed(icmp.failure, describe(exc), icmp)
        if isinstance(exc, ConnectionRefusedError):  # the kernel saw a port unreachable
            return FlowClosed(Failure.PORT_UNREACHABLE, describe(exc))
        return FlowClosed(classify_error(exc), describe(exc))

    def traffic(self) -> tuple[int, int]:
        if self._final is not None:
            return self._final
        if self.streams is None:
            return self.sent, self.received
        return tcp_traffic(self.sock)

    def close(self) -> None:
        if self._final is not None:
            return
        self._final = self.traffic()
        if self.streams is not None:
            self.streams[1].transport.abort()
        else:
            self.sock.close()



async def open_flow(address: str, port: int, transport: Transport,
                    ssl_context: Callable[[], ssl.SSLContext], *, sni: str, deadline: float,
                    framer: Framer) -> Flow:
    """Open a flow. Raises OSError (UDP: no local socket, e.g. no route),
    ConnectFailed (TCP connect) or HandshakeFailed (TLS handshake)."""
    base: dict[str, Any] = {"address": address, "transport": str(transport)}
    if transport is Transport.UDP:
        flow = Flow(transport, address, port, udp_socket(address, port), framer)
        flow.evidence.update(base)
        return flow

    try:
        sock, connect_ms = await tcp_connect(address, port, max(deadline - time.monotonic(), 0.1))
    except ConnectFailed as exc:
        exc.evidence.update(base)
        raise
    base["connect_ms"] = round(connect_ms, 3)
    if transport is Transport.TLS:
        base["sni"] = sni
    start = time.perf_counter()
    remaining = max(deadline - time.monotonic(), 0.5)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                sock=sock, ssl=ssl_context() if transport is Transport.TLS else None,
                server_hostname=sni if transport is Transport.TLS else None,
                # our own deadline: asyncio reports its handshake timeout as an abort
                ssl_handshake_timeout=remaining + 60 if transport is Transport.TLS else None),
            remaining)
    except (OSError, ssl.SSLError, TimeoutError, EOFError) as exc:
        icmp = read_icmp_error(sock, address)
        traffic = tcp_traffic(sock)
        sock.close()
        raise HandshakeFailed(icmp.failure if icmp else classify_error(exc), describe(exc), icmp,
                              (time.perf_counter() - start) * 1000, traffic, base) from exc
    flow = Flow(transport, address, port, sock, framer, (reader, writer))
    if transport is Transport.TLS:
        base["handshake_ms"] = round((time.perf_counter() - start) * 1000, 3)
        ssl_object = writer.get_extra_info("ssl_object")
        if ssl_object is not None:
            base["tls_version"] = ssl_object.version()
    flow.evidence.update(base)
    return flow


@dataclass
class Transaction(Generic[T]):
    """What one transaction saw. `ended`: `reply`, `timeout`, `closed` (see
    `closed`) or `garbage` (a byte stream that cannot be framed)."""

    ended: str = "timeout"
    reply: T | None = None
    attempts: list[dict[str, float]] = field(default_factory=list)
    anomalies: list[dict[str, str]] = field(default_factory=list)
    anomaly_count: int = 0
    closed: FlowClosed | None = None
    elapsed_ms: float = 0.0

    def note(self, kind: str, exc: BaseException) -> None:
        self.anomaly_count += 1
        if len(self.anomalies) < MAX_ANOMALIES:
            self.anomalies.append({"kind": kind, "detail": describe(exc)[:160]})

    @property
    def forged(self) -> bool:
        """Whether any anomaly was a well-formed message that was not ours
        (rather than bytes that do not parse at all)."""
        return any(a["kind"] == "mismatch" for a in self.anomalies)

    def evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"attempts": self.attempts}
        answered = [a["rtt_ms"] for a in self.attempts if "rtt_ms" in a]
        if answered:
            out["rtt_ms"] = answered[0]
        if self.anomaly_count:
            out["anomalies"] = self.anomalies
            out["anomaly_count"] = self.anomaly_count
        return out



Request = bytes | Callable[[int], bytes] | None
Match = Callable[[bytes], tuple[T, int | None] | None]


async def exchange(flow: Flow, request: Request, match: Match[T], deadline: float, *,
                   resend: bool | None = None) -> Transaction[T]:
    """Send `request` (bytes, or a function of the attempt number giving each
    attempt its own transaction; None: send nothing, only wait) and wait until
    `match` accepts a message or `deadline` (time.monotonic()) passes.

    `match` returns (reply, index of the attempt it answers, or None for the
    latest), None for a message to ignore silently, and raises Mismatch or
    ValueError for anything a real server would not send. The request is
    retransmitted on UDP (`resend` None), always (True) or never (False); the
    round-trip time of a request retransmitted with one transaction id is
    measured from the latest send (RFC 6298 §3)."""
    transaction: Transaction[T] = Transaction()
    start = time.monotonic()
    if request is None:
        offsets: list[float] = []
    elif resend or (resend is None and flow.datagram):
        offsets = retransmit_offsets(deadline - start, limit=flow.max_sends or MAX_SENDS)
    else:
        offsets = [0.0]
    sent_at: list[float] = []
    try:
        while True:
            now = time.monotonic()
            while len(sent_at) < len(offsets) and now - start >= offsets[len(sent_at)]:
                assert request is not None
                data = request(len(sent_at)) if callable(request) else request
                await flow.send(data)
                sent_at.append(time.monotonic())
                transaction.attempts.append({"sent_ms": round((sent_at[-1] - start) * 1000, 3)})
                now = time.monotonic()
            wake = deadline
            if len(sent_at) < len(offsets):
                wake = min(deadline, start + offsets[len(sent_at)])
            if now >= deadline:
                break
            try:
                data = await flow.receive(wake - now)
            except TimeoutError:
                continue
            except ValueError as exc:  # a stream that cannot be framed: nothing more to read
                transaction.note("malformed", exc)
                transaction.ended = "garbage"
                break
            received = time.monotonic()
            try:
                matched = match(data)
            except Mismatch as exc:
                transaction.note("mismatch", exc)
                continue
            except ValueError as exc:
                transaction.note("malformed", exc)
                if not flow.datagram:
                    transaction.ended = "garbage"
                    break
                continue
            if matched is None:
                continue
            reply, index = matched
            transaction.ended, transaction.reply = "reply", reply
            if sent_at:
                if index is None or not 0 <= index < len(sent_at):
                    index = len(sent_at) - 1
                transaction.attempts[index]["rtt_ms"] = round((received - sent_at[index]) * 1000, 3)
            break
    except FlowClosed as exc:
        transaction.ended, transaction.closed = "closed", exc
    transaction.elapsed_ms = round((time.monotonic() - start) * 1000, 3)
    return transaction
