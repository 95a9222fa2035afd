"""The lab's reference TCP and TLS servers (chat, messaging, impostor) and
its UDP echo (the peer TURN relays data to).

`python -m deploy.lab.tlsserver CONFIG.json` with
`{"listen": [{"address": A, "port": P, "cert": PEM, "key": PEM}, ...]}`: a
listener with `cert` speaks TLS, one without is plain TCP, one with
`"proto": "udp-echo"` sends every datagram back. A TCP or TLS connection is
held open, and what the client sends is discarded, until the client leaves:
what a chat server looks like to a connect-and-handshake check. The UDP
listeners are bound first, so once the TCP ones accept, everything is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import ssl
import sys
from pathlib import Path
from typing import Any, cast


async def _hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, ssl.SSLError, asyncio.IncompleteReadError):
        while await reader.read(65536):
            pass
    writer.transport.abort()


def _context(spec: dict[str, Any]) -> ssl.SSLContext | None:
    if not spec.get("cert"):
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(spec["cert"], spec["key"])
    return context


class _Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # the datagram endpoint's

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)


async def serve(config: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    closers: list[Any] = []
    for spec in config["listen"]:
        if spec.get("proto") == "udp-echo":
            transport, _ = await loop.create_datagram_endpoint(
                _Echo, local_addr=(spec["address"], int(spec["port"])))
            closers.append(transport)
    for spec in config["listen"]:
        if spec.get("proto") != "udp-echo":
            closers.append(await asyncio.start_server(
                _hold, spec["address"], int(spec["port"]), ssl=_context(spec),
                reuse_address=True))
    print("ready", flush=True)
    await stop.wait()
    for closer in closers:
        closer.close()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m deploy.lab.tlsserver CONFIG.json", file=sys.stderr)
        return 2
    asyncio.run(serve(json.loads(Path(argv[0]).read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
