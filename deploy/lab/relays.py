"""coturn and Kamailio in the lab, through the launchers of deploy/services.

The supervisor runs inside the internet namespace, so the launchers run
without `netns`; every port is given explicitly. Each entry is (name, an
async context manager that yields the daemon's pid).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from deploy.lab.addresses import SERVICES

TURN_USERS = {"lab": "lab-secret"}  # as in configs/lab-catalogue.yaml
TURN_REALM = "lab"


@contextlib.asynccontextmanager
async def _running(daemon: Any) -> AsyncIterator[int | None]:
    async with daemon:
        yield daemon.pid


def contexts(workdir: Path) -> list[tuple[str, AbstractAsyncContextManager[int | None]]]:
    from deploy.services.coturn import Coturn
    from deploy.services.kamailio import Kamailio

    pki = workdir / "pki"
    found: list[tuple[str, AbstractAsyncContextManager[int | None]]] = [
        ("coturn-relay", _running(Coturn(
            workdir / "coturn-relay", host=SERVICES["relay"], port=3478, tls_port=5349,
            cert=pki / "relay.lumen.lab.crt", key=pki / "relay.lumen.lab.key",
            users=TURN_USERS, realm=TURN_REALM))),
    ]
    # parla's STUN servers: the standard port and Google's, one coturn each
    for port in (3478, 19302):
        found.append((f"coturn-stun-{port}", _running(Coturn(
            workdir / f"coturn-stun-{port}", host=SERVICES["stun"], port=port,
            users=TURN_USERS, realm=TURN_REALM))))
    found.append(("kamailio", _running(Kamailio(
        workdir / "kamailio", host=SERVICES["sip"], port=5060, tls_port=5061,
        cert=pki / "sip.parla.lab.crt", key=pki / "sip.parla.lab.key"))))
    return found
