"""Socket primitives shared by the checks: TCP connect that tells RST from
timeout from ICMP, connected UDP, traffic counts, kernel receive times.

ICMP errors are read from the socket error queue (IP_RECVERR): the kernel maps
both a TCP RST and an ICMP port-unreachable to ECONNREFUSED, and only the error
queue tells them apart.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
import time

from probe.core.errors import ConnectFailed
from probe.core.failures import Failure, IcmpReport, classify_error, describe, icmp_failure

IP_RECVERR = 11  # linux/in.h; Python's socket module lacks the constant
IPV6_RECVERR = 25
SO_EE_ORIGIN_ICMP = 2
SO_EE_ORIGIN_ICMP6 = 3
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; 35 when Python lacks the name

def enable_recverr(sock: socket.socket) -> None:
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
    else:
        sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)


def read_icmp_error(sock: socket.socket, target: str) -> IcmpReport | None:
    """Pop one ICMP error from the socket's error queue, if there is one."""
    try:
        _, ancdata, _, _ = sock.recvmsg(512, 512, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError, OSError):
        return None
    for level, kind, data in ancdata:
        if (level, kind) not in ((socket.IPPROTO_IP, IP_RECVERR),
                                 (socket.IPPROTO_IPV6, IPV6_RECVERR)) or len(data) < 16:
            continue
        _errno, origin, icmp_type, icmp_code, _pad, _info, _data = struct.unpack(
            "=IBBBBII", data[:16]
        )
        offender = _offender_address(data[16:])
        if origin not in (SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6):
            continue
        failure = icmp_failure(icmp_code, ipv6=origin == SO_EE_ORIGIN_ICMP6)
        return IcmpReport(icmp_type, icmp_code, failure, offender == target)
    return None


def _offender_address(data: bytes) -> str | None:
    if len(data) >= 8:
        family = struct.unpack("=H", data[:2])[0]
        if family == socket.AF_INET:
            return socket.inet_ntop(socket.AF_INET, data[4:8])
        if family == socket.AF_INET6 and len(data) >= 24:
            return socket.inet_ntop(socket.AF_INET6, data[8:24])
    return None


def _family(ip: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ipaddress.ip_address(ip).version == 6 else socket.AF_INET


async def tcp_connect(ip: str, port: int, timeout: float) -> tuple[socket.socket, float]:
    """Connect and return (socket, connect time in ms), or raise ConnectFailed."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(_family(ip), socket.SOCK_STREAM)
    sock.setblocking(False)
    enable_recverr(sock)
    start = time.perf_counter()
    try:
        await asyncio.wait_for(loop.sock_connect(sock, (ip, port)), timeout)
    except (OSError, TimeoutError) as exc:
        elapsed = (time.perf_counter() - start) * 1000
        icmp = read_icmp_error(sock, ip)
        sock.close()
        failure = icmp.failure if icmp else classify_error(exc)
        if failure is Failure.CONNECTION_REFUSED:
            failure = Failure.CONNECTION_RESET  # a RST answering our SYN
        raise ConnectFailed(failure, elapsed, describe(exc), icmp) from exc
    return sock, (time.perf_counter() - start) * 1000


def udp_socket(ip: str, port: int) -> socket.socket:
    """A non-blocking UDP socket connected to (ip, port) with ICMP errors enabled.

    Connected, because only a connected UDP socket receives ICMP errors."""
    sock = socket.socket(_family(ip), socket.SOCK_DGRAM)
    sock.setblocking(False)
    enable_recverr(sock)
    sock.connect((ip, port))
    return sock


_TCP_INFO_LEN = 144
_IP_TCP_HEADERS = 52  # IPv4 20 + TCP 20 + timestamps 12: per-segment overhead estimate


def tcp_traffic(sock: socket.socket | None) -> tuple[int, int]:
    """(bytes sent, bytes received) on a TCP socket so far, headers included,
    from the kernel's TCP_INFO (payload bytes acked/received plus segments)."""
    if sock is None:
        return 0, 0
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
    except OSError:
        return 0, 0
    if len(info) < _TCP_INFO_LEN:
        return 0, 0
    acked, received = struct.unpack_from("=QQ", info, 120)
    segs_out, segs_in = struct.unpack_from("=II", info, 136)
    return acked + segs_out * _IP_TCP_HEADERS, received + segs_in * _IP_TCP_HEADERS


def ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


def kernel_time(ancillary: list[tuple[int, int, bytes]]) -> float:
    """Receive time the kernel stamped on a datagram (SO_TIMESTAMPNS ancillary
    data from recvmsg), so a busy event loop does not blur it; now when absent."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            seconds, nanoseconds = struct.unpack("=qq", data[:16])
            return float(seconds) + float(nanoseconds) / 1e9
    return time.time()
