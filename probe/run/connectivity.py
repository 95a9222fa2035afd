"""Connectivity: is there any network at all?

With no network, every check fails, and none of those failures is evidence of
blocking: they are all `inconclusive`. The pre-check connects over TCP to the
control and to the collector (else, when neither is given, to the documented
defaults below). But censors block measurement infrastructure too, so the
pre-check alone does not decide: during the pass, any endpoint that worked,
or the control's answer arriving, proves the network works
(`ConnectivityWatch`). The targets the pre-check could not reach are
recorded as such (`unreachable`): "the collector is blocked here" is a finding.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from probe.checks.base import Observation
from probe.core.errors import ConnectFailed, ResolveError
from probe.dns.resolve import resolve_host
from probe.net.sockets import tcp_connect
from probe.verdict.connectivity import proves_connectivity

# Used only when the run has neither a control nor a collector: anycast
# resolvers of three operators, reached over TCP port 443 (Cloudflare, Google, Quad9).
DEFAULT_TARGETS = (("1.1.1.1", 443), ("8.8.8.8", 443), ("9.9.9.9", 443))


@dataclass(frozen=True)
class Target:
    role: str  # control | collector | default
    host: str
    port: int

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass
class Connectivity:
    """The pre-check: `ok` when a target answered. `reached` and `unreachable`
    name the targets by role (`control`, `collector`, `default`); a target
    still being tried when the pass started is neither (it is filled in when
    its attempt ends)."""

    ok: bool
    target: str
    detail: str
    elapsed_ms: float
    reached: list[str] = field(default_factory=list)
    unreachable: dict[str, str] = field(default_factory=dict)  # role -> error
    attempts: Any = field(default=None, repr=False)  # the attempts still running

    def close(self) -> None:
        """Stop the attempts still running (the pass is over)."""
        if self.attempts is not None:
            self.attempts.cancel()


def targets_for(control: str | None, collector: str | None) -> list[Target]:
    found: list[Target] = []
    for role, url in (("control", control), ("collector", collector)):
        if url:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            target = Target(role, parts.hostname or "", port)
            if all(t.name != target.name for t in found):
                found.append(target)
    return found or [Target("default", host, port) for host, port in DEFAULT_TARGETS]


async def precheck(targets: list[Target], resolver: tuple[str, int] | None,
                   timeout: float = 5.0) -> Connectivity:
    """Returns as soon as one target answers (the pass starts then); the other
    attempts go on in the background and fill in `reached`/`unreachable`."""
    start = time.perf_counter()
    result = Connectivity(False, ", ".join(t.name for t in targets), "", 0.0)
    answered = asyncio.Event()

    async def one(target: Target) -> None:
        try:
            address = await resolve_host(target.host, resolver, timeout)
            sock, _ = await tcp_connect(address, target.port, timeout)
            sock.close()
        except (ConnectFailed, ResolveError, OSError) as exc:
            result.unreachable[target.role] = str(exc)[:200]
            return
        result.reached.append(target.role)
        if not result.ok:
            result.ok, result.target, result.detail = True, target.name, "connected"
            result.elapsed_ms = round((time.perf_counter() - start) * 1000, 3)
            answered.set()

    attempts: asyncio.Future[list[None]] = asyncio.gather(*(one(t) for t in targets))
    result.attempts = attempts
    waiting: asyncio.Future[Any] = asyncio.ensure_future(answered.wait())
    await asyncio.wait([attempts, waiting], return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    if not result.ok:
        result.detail = "; ".join(result.unreachable.values())[:300]
        result.elapsed_ms = round((time.perf_counter() - start) * 1000, 3)
    return result


class ConnectivityWatch:
    """The pass's connectivity: the pre-check, then any proof found later (an
    endpoint that worked, the control's answer). Read at classification time,
    so a failure judged after the first success knows the network works."""

    def __init__(self, precheck: Connectivity,
                 control_answered: Callable[[], bool] = lambda: False,
                 observations: int = 0) -> None:
        self.precheck = precheck
        self.control_answered = control_answered
        self.endpoint_worked = False
        self.remaining = observations  # first observations of the pass still to come
        self.settled = asyncio.Event()
        if observations <= 0:
            self.settled.set()

    def note(self, observation: Observation) -> None:
        """Any observation of the pass (second looks included)."""
        if proves_connectivity(observation):
            self.endpoint_worked = True
            self.settled.set()

    def counted(self) -> None:
        """One of the pass's first observations is in."""
        self.remaining -= 1
        if self.remaining <= 0:
            self.settled.set()

    async def known(self) -> bool:
        """Whether the network works, once that can be said: at once when the
        pre-check or the control proved it, else when an endpoint works or
        every first observation is in (a failure judged earlier could miss
        the proof an endpoint still running would give)."""
        if not self.ok:
            await self.settled.wait()
        return self.ok

    @property
    def proven_by(self) -> str | None:
        if self.precheck.ok:
            return "precheck"
        if self.control_answered():
            return "control"
        return "endpoint" if self.endpoint_worked else None

    @property
    def ok(self) -> bool:
        return self.proven_by is not None

    def evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": self.ok, "target": self.precheck.target,
                               "proven_by": self.proven_by}
        if self.precheck.unreachable:
            out["unreachable"] = sorted(self.precheck.unreachable)
        return out
