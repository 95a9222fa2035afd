"""TCP and TLS servers on loopback: one that works, and the ways one can fail."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Iterator


def _rst(sock: socket.socket | None) -> None:
    """Close so that the kernel sends a RST instead of a FIN."""
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@contextlib.asynccontextmanager
async def tcp_server(mode: str = "accept", ssl_context: ssl.SSLContext | None = None,
                     host: str = "127.0.0.1") -> AsyncIterator[int]:
    """Modes: `accept` (holds the connection open), `hang` (never speaks: a TLS
    handshake times out), `reset_on_data` (RST once the client sends anything),
    `reset_after_tls` (completes the TLS handshake, then RST)."""
    connections: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        if mode == "reset_on_data":
            with contextlib.suppress(OSError):
                await reader.read(1)
            _rst(writer.get_extra_info("socket"))
            writer.transport.abort()
            return
        if mode == "reset_after_tls":
            await asyncio.sleep(0.05)
            _rst(writer.get_extra_info("socket"))
            writer.transport.abort()
            return
        with contextlib.suppress(OSError, ssl.SSLError):
            await reader.read(65536)  # hold until the client leaves

    server = await asyncio.start_server(handle, host, 0, ssl=ssl_context)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        for writer in connections:
            writer.transport.abort()
        server.close()


@contextlib.contextmanager
def full_backlog(host: str = "127.0.0.1") -> Iterator[int]:
    """A listener whose accept queue is full: the kernel drops further SYNs, so
    a connect times out exactly as behind a dropping firewall."""
    listener = socket.socket()
    listener.bind((host, 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect((host, port))
        fillers.append(filler)
    try:
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def closed_port(host: str = "127.0.0.1") -> int:
    """A port with nothing listening (the kernel answers a SYN with a RST)."""
    sock = socket.socket()
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    sock.close()
    return port
