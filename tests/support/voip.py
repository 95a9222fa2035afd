"""Real VoIP servers for the tests: coturn and Kamailio on loopback (UDP, TCP
and TLS with a certificate from a test CA), and a UDP echo peer for TURN relays."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest

from deploy.services.coturn import Coturn
from deploy.services.kamailio import Kamailio
from tests.conftest import in_ci
from tests.support.pki import TestCA

SERVER_NAME = "voip.test"
TURN_USER, TURN_PASSWORD = "probe", "s3cret"


def require(command: str) -> None:
    """Skip without the daemon, except in CI, where `make test` installs it."""
    if shutil.which(command) is None and not Path("/usr/sbin", command).exists():
        message = f"{command} is not installed (deploy/install-system-deps.sh installs it)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)


@dataclass
class Servers:
    ca: TestCA
    coturn: Coturn | None = None
    kamailio: Kamailio | None = None


@contextlib.contextmanager
def coturn_server(directory: Path, ca: TestCA | None = None) -> Iterator[Servers]:
    require("turnserver")
    ca = ca or TestCA(directory)
    leaf = ca.issue(SERVER_NAME, "127.0.0.1")
    with Coturn(directory / "coturn", cert=leaf.cert_path, key=leaf.key_path,
                users={TURN_USER: TURN_PASSWORD}, allow_loopback_peers=True) as coturn:
        yield Servers(ca, coturn=coturn)


@contextlib.contextmanager
def kamailio_server(directory: Path, ca: TestCA | None = None) -> Iterator[Servers]:
    require("kamailio")
    ca = ca or TestCA(directory)
    leaf = ca.issue(SERVER_NAME, "127.0.0.1")
    with Kamailio(directory / "kamailio", cert=leaf.cert_path, key=leaf.key_path) as kamailio:
        yield Servers(ca, kamailio=kamailio)


class _Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # the datagram endpoint's

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)


@contextlib.asynccontextmanager
async def udp_echo(host: str = "127.0.0.1") -> AsyncIterator[int]:
    """A UDP echo peer (what the catalogue's TURN `peer` points at)."""
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        _Echo, local_addr=(host, 0))
    try:
        yield transport.get_extra_info("sockname")[1]
    finally:
        transport.close()
