"""The connectivity pre-check: is there any network at all?

With no network, every check fails, and none of those failures is evidence of
blocking: the pre-check turns them all into `inconclusive`. It connects over
TCP to the control, else to the collector, else (when neither is given) to
the documented defaults below, and succeeds if any one answers.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from probe.core.errors import ConnectFailed, ResolveError
from probe.dns.resolve import resolve_host
from probe.net.sockets import tcp_connect

# Used only when the run has neither a control nor a collector: anycast
# resolvers of three operators, reached over TCP port 443 (Cloudflare, Google, Quad9).
DEFAULT_TARGETS = (("1.1.1.1", 443), ("8.8.8.8", 443), ("9.9.9.9", 443))


@dataclass(frozen=True)
class Connectivity:
    ok: bool
    target: str
    detail: str
    elapsed_ms: float


def targets_for(control: str | None, collector: str | None) -> list[tuple[str, int]]:
    for url in (control, collector):
        if url:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            return [(parts.hostname or "", port)]
    return list(DEFAULT_TARGETS)


async def precheck(targets: list[tuple[str, int]], resolver: tuple[str, int] | None,
                   timeout: float = 5.0) -> Connectivity:
    start = time.perf_counter()

    async def one(host: str, port: int) -> str:
        address = await resolve_host(host, resolver, timeout)
        sock, _ = await tcp_connect(address, port, timeout)
        sock.close()
        return f"{host}:{port}"

    tasks = [asyncio.ensure_future(one(h, p)) for h, p in targets]
    errors: list[str] = []
    try:
        for finished in asyncio.as_completed(tasks):
            try:
                target = await finished
            except (ConnectFailed, ResolveError, OSError) as exc:
                errors.append(str(exc))
                continue
            return Connectivity(True, target, "connected",
                                round((time.perf_counter() - start) * 1000, 3))
    finally:
        for task in tasks:
            task.cancel()
    names = ", ".join(f"{h}:{p}" for h, p in targets)
    return Connectivity(False, names, "; ".join(errors)[:300],
                        round((time.perf_counter() - start) * 1000, 3))
