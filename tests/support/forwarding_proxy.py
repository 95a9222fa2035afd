"""A reverse proxy on loopback that says every client comes from a given
address (`X-Forwarded-For`), as Caddy in front of a collector says the real
one: the way to show the test helper a public address on a test machine.
Each request gets `Connection: close`, so each carries the header."""

from __future__ import annotations

import asyncio
from types import TracebackType


class ForwardingProxy:
    def __init__(self, upstream_port: int, client_address: str) -> None:
        self.upstream_port = upstream_port
        self.client_address = client_address
        self.server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> ForwardingProxy:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            kept = [line for line in lines[1:] if line and not line.lower().startswith(
                ("connection:", "x-forwarded-for:"))]
            new_head = "\r\n".join([lines[0], *kept, f"X-Forwarded-For: {self.client_address}",
                                    "Connection: close", "", ""]).encode("latin-1")
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1",
                                                                 self.upstream_port)
            up_writer.write(new_head)

            async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
                sink.close()

            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer),
                                 return_exceptions=True)
        except (asyncio.IncompleteReadError, OSError):
            writer.close()
