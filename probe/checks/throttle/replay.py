"""The flow sender: one round of a schedule as two interleaved flows.

The VoIP flow and its bit-inverted control leave from two sockets (two
5-tuples, so a classifier judges each flow on its own) toward the same
reflector port, packet by packet in random order: each pair of packets meets
the same network at the same moment, which makes the comparison immune to
what changes over time (cross traffic, radio conditions). Echoes are
timestamped by the kernel (SO_TIMESTAMPNS), so a busy probe does not blur them.

UDP sockets are connected with IP_RECVERR (probe/net/sockets.py), so an ICMP error
(a closed port, a firewall's "administratively prohibited") is recorded.
TCP carries the same packets in RFC 4571 frames, one connection per flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from probe.checks.throttle.stats import Sent
from probe.core.failures import IcmpReport, classify_error, describe
from probe.net.sockets import (
    SO_TIMESTAMPNS,
    kernel_time,
    read_icmp_error,
    tcp_traffic,
    udp_socket,
)
from probe.wire import throttle as wire
from probe.wire.profiles import Kind, Packet, Schedule, stun_check

DRAIN_QUIET = 0.25  # after the last send, wait until echoes stop for this long...
DRAIN_MAX = 1.0  # ...but no longer than this
OVERHEAD = {4: 28, 6: 48}  # IP + UDP header bytes
TCP_CONNECT_TIMEOUT = 5.0


@dataclass
class FlowLog:
    """What one flow sent and got back."""

    name: str
    sent: list[Sent] = field(default_factory=list)
    echoes: dict[int, float] = field(default_factory=dict)  # seq -> receive time
    send_errors: int = 0
    error: str | None = None
    connect_failure: str | None = None  # TCP: the connection was never made (a Failure)
    icmp: IcmpReport | None = None
    bytes_sent: int = 0
    bytes_received: int = 0

    def evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sent": len(self.sent), "echoed": len(self.echoes)}
        stun = [p for p in self.sent if p.kind == Kind.STUN]
        if stun:
            out["stun_echoed"] = f"{sum(p.seq in self.echoes for p in stun)}/{len(stun)}"
        if self.send_errors:
            out["send_errors"] = self.send_errors
        if self.error:
            out["error"] = self.error
        if self.connect_failure:
            out["connect_failure"] = self.connect_failure
        if self.icmp:
            out["icmp"] = self.icmp.as_evidence()
        return out


def _packet(packet: Packet, key: bytes, flow: int, rng: random.Random) -> bytes:
    token = wire.make_token(key, flow, packet.seq)
    stun = packet.kind is Kind.STUN
    data = stun_check(token, rng) if stun else wire.place(packet.template, token, stun=False)
    return wire.invert(data, stun) if flow & 1 else data


def _groups(schedule: Schedule) -> list[list[Packet]]:
    groups: list[list[Packet]] = []
    for packet in schedule.packets:
        if groups and groups[-1][0].at == packet.at:
            groups[-1].append(packet)
        else:
            groups.append([packet])
    return groups


async def _pace(schedule: Schedule, rng: random.Random, send: Any) -> None:
    """Call `send(packet, control)` for both flows at each packet's time, in
    random order per packet (a burst goes out v c v c... or c v c v...)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for group in _groups(schedule):
        delay = start + group[0].at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        for packet in group:
            first = rng.random() < 0.5
            send(packet, first)
            send(packet, not first)


async def _drain(logs: list[FlowLog], expected: int) -> None:
    deadline = time.monotonic() + DRAIN_MAX
    last = -1
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        count = sum(len(log.echoes) for log in logs)
        if count >= expected:
            return
        if count != last:
            last, quiet_since = count, time.monotonic()
        elif time.monotonic() - quiet_since >= DRAIN_QUIET:
            return
        await asyncio.sleep(0.02)



async def replay_udp(address: str, port: int, key: bytes, schedule: Schedule, round_: int,
                     rng: random.Random) -> dict[str, FlowLog]:
    """Send one round over UDP; the logs of the `voip` and `control` flows."""
    loop = asyncio.get_running_loop()
    overhead = OVERHEAD[6 if ":" in address else 4]
    logs = {"voip": FlowLog("voip"), "control": FlowLog("control")}
    sockets: dict[bool, socket.socket] = {}
    try:
        for control in (False, True):
            sock = udp_socket(address, port)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sockets[control] = sock
        for control, sock in sockets.items():
            log = logs["control" if control else "voip"]
            loop.add_reader(sock.fileno(), _reader(sock, address, key,
                                                   wire.flow_id(round_, control), log, overhead))

        def send(packet: Packet, control: bool) -> None:
            log = logs["control" if control else "voip"]
            data = _packet(packet, key, wire.flow_id(round_, control), rng)
            at = time.time()
            try:
                sockets[control].send(data)
            except OSError as exc:  # an earlier ICMP error, or a full buffer
                log.send_errors += 1
                log.error = log.error or describe(exc)
                if log.icmp is None:
                    log.icmp = read_icmp_error(sockets[control], address)
                return
            log.sent.append(Sent(packet.seq, at, len(data), str(packet.kind)))
            log.bytes_sent += len(data) + overhead

        await _pace(schedule, rng, send)
        await _drain(list(logs.values()), 2 * len(schedule.packets))
    finally:
        for sock in sockets.values():
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(sock.fileno())
            sock.close()
    return logs


def _reader(sock: socket.socket, address: str, key: bytes, flow: int, log: FlowLog,
            overhead: int) -> Any:
    def readable() -> None:
        for _ in range(256):
            try:
                data, ancillary, _flags, _source = sock.recvmsg(65535, 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # IP_RECVERR: an ICMP error is waiting
                icmp = read_icmp_error(sock, address)
                if log.icmp is None and icmp is not None:
                    log.icmp = icmp
                log.error = log.error or describe(exc)
                continue
            at = kernel_time(ancillary)
            found = wire.find(key, data)
            log.bytes_received += len(data) + overhead
            if found is not None and found.flow == flow and found.seq not in log.echoes:
                log.echoes[found.seq] = at

    return readable


async def replay_tcp(address: str, port: int, key: bytes, schedule: Schedule, round_: int,
                     rng: random.Random) -> dict[str, FlowLog]:
    """The same round over two TCP connections, RFC 4571 framing."""
    logs = {"voip": FlowLog("voip"), "control": FlowLog("control")}
    streams: dict[bool, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
    readers: list[asyncio.Task[None]] = []
    try:
        for control in (False, True):
            log = logs["control" if control else "voip"]
            try:
                streams[control] = await asyncio.wait_for(
                    asyncio.open_connection(address, port), TCP_CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as exc:
                log.connect_failure = str(classify_error(exc))
                log.error = describe(exc)
        if len(streams) < 2:
            return logs
        for control, (reader, _) in streams.items():
            log = logs["control" if control else "voip"]
            readers.append(asyncio.ensure_future(
                _read_frames(reader, key, wire.flow_id(round_, control), log)))

        def send(packet: Packet, control: bool) -> None:
            log = logs["control" if control else "voip"]
            data = _packet(packet, key, wire.flow_id(round_, control), rng)
            writer = streams[control][1]
            if writer.is_closing():
                log.send_errors += 1
                return
            log.sent.append(Sent(packet.seq, time.time(), len(data), str(packet.kind)))
            writer.write(struct.pack("!H", len(data)) + data)

        await _pace(schedule, rng, send)
        await _drain(list(logs.values()), 2 * len(schedule.packets))
    finally:
        for task in readers:
            task.cancel()
        for control, (_, writer) in streams.items():
            sent, received = tcp_traffic(writer.get_extra_info("socket"))
            log = logs["control" if control else "voip"]
            log.bytes_sent, log.bytes_received = sent, received
            writer.close()
    return logs


async def _read_frames(reader: asyncio.StreamReader, key: bytes, flow: int,
                       log: FlowLog) -> None:
    try:
        while True:
            (length,) = struct.unpack("!H", await reader.readexactly(2))
            data = await reader.readexactly(length)
            found = wire.find(key, data)
            if found is not None and found.flow == flow and found.seq not in log.echoes:
                log.echoes[found.seq] = time.time()
    except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
        if not isinstance(exc, asyncio.IncompleteReadError):
            log.error = log.error or describe(exc)
