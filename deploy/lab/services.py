"""The reference services of the lab's internet, and the supervisor that keeps
them running.

`python -m deploy.lab.services WORKDIR` runs inside the internet namespace
(started by `Lab.up` with `ip netns exec`), so every service it starts lives
there too and readiness is checked with plain connects. It starts the DNS
server, the TCP/TLS servers, coturn, Kamailio and the collector, writes
`run/services.json` (name -> pid) and `run/ready`, and stops them all on
SIGTERM. If one fails to start it writes `run/failed` with the reason and
exits 1. `down` kills whatever is left in the namespaces, so a crashed
supervisor leaves nothing behind either.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.lab.addresses import COLLECTOR_PORT, SERVICES

BIN = Path(sys.executable).parent
START_TIMEOUT = 30.0
TURN_USER, TURN_PASSWORD, TURN_REALM = "lab", "lab-secret", "lab"
PEER_ICE_SERVERS = [{"urls": f"turn:{SERVICES['relay']}:3478?transport=udp",
                     "username": TURN_USER, "credential": TURN_PASSWORD}]


class ServiceError(Exception):
    pass


@dataclass
class Daemon:
    """A child process, ready once every (address, port) accepts a TCP connection."""

    name: str
    argv: list[str]
    log: Path
    ports: list[tuple[str, int]]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Daemon:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv, stdout=log, stderr=log, stdin=asyncio.subprocess.DEVNULL,
                env={**os.environ, **self.env}, cwd=self.cwd)
        try:
            await self._wait_ready()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        pending = list(self.ports)
        while pending:
            if self.process.returncode is not None:
                raise ServiceError(f"{self.name} exited with status {self.process.returncode} "
                                   f"at start (see {self.log}): {tail(self.log)}")
            if time.monotonic() > deadline:
                raise ServiceError(f"{self.name} did not listen on {pending[0][0]}:"
                                   f"{pending[0][1]} within {START_TIMEOUT:g} s (see {self.log})")
            if await _accepts(*pending[0]):
                pending.pop(0)
            else:
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.terminate()
        try:
            await asyncio.wait_for(self.process.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None


async def _accepts(address: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(address, port), 1)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


def tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return " | ".join(text[-lines:]) or "empty log"


# --- the services -------------------------------------------------------------------


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def dns_daemon(workdir: Path) -> Daemon:
    return Daemon("dns", python_module("deploy.lab.dns", str(workdir / "dns.json")),
                  workdir / "logs" / "dns.log", [(SERVICES["ns"], 53), (SERVICES["liar"], 53)],
                  cwd=Path(__file__).resolve().parents[2])


def tls_daemon(workdir: Path) -> Daemon:
    config = json.loads((workdir / "tls.json").read_text())
    return Daemon("tls", python_module("deploy.lab.tlsserver", str(workdir / "tls.json")),
                  workdir / "logs" / "tls.log",
                  [(spec["address"], int(spec["port"])) for spec in config["listen"]
                   if spec.get("proto") != "udp-echo"],  # bound before the TCP ones
                  cwd=Path(__file__).resolve().parents[2])


def collector_daemon(workdir: Path, settings: dict[str, Any]) -> Daemon:
    env = {"SSL_CERT_FILE": str(workdir / "pki" / "lab-ca.pem"),
           # the test helper resolves lab names with the lab's DNS, and the lab's
           # probes may ask it as often as the accuracy runs need
           "VOIPWATCH_COLLECTOR_RESOLVER": SERVICES["ns"],
           "VOIPWATCH_COLLECTOR_CONTROL_RATE_PER_MINUTE": "100000",
           "VOIPWATCH_COLLECTOR_CONTROL_CONCURRENCY_PER_KEY": "32",
           # the reference peer (webrtc endpoints) gathers through lumen's relay, as a
           # collector uses its own coturn; three probes call with four variants each
           "VOIPWATCH_COLLECTOR_WEBRTC_ICE_SERVERS": json.dumps(PEER_ICE_SERVERS),
           "VOIPWATCH_COLLECTOR_WEBRTC_MAX_SESSIONS": "32",
           # the lab's probes sit on RFC 1918 addresses (their ICE candidates), each calls
           # as often as its catalogue says at once (ten for the default catalogue's
           # mirror), and the lab hands out no enrollment tokens
           "VOIPWATCH_COLLECTOR_WEBRTC_ALLOW_PRIVATE": "true",
           "VOIPWATCH_COLLECTOR_WEBRTC_SESSIONS_PER_KEY": "32",
           "VOIPWATCH_COLLECTOR_REQUIRE_TOKEN": "false",
           "VOIPWATCH_COLLECTOR_REGISTER_RATE_PER_HOUR": "1000",
           **{k: str(v) for k, v in settings.get("collector_env", {}).items()}}
    argv = [str(BIN / "voipwatch-collector"), "serve", "--data-dir", str(workdir / "collector"),
            "--host", SERVICES["collector"], "--port", str(COLLECTOR_PORT),
            # one API process (the reference peer and reflector in it, as the verdicts
            # were validated): the default, one per core, would add a media child and a
            # second worker competing with the measured calls for this machine's cores
            "--workers", "1", *settings.get("collector_args", [])]
    return Daemon("collector", argv, workdir / "logs" / "collector.log",
                  [(SERVICES["collector"], COLLECTOR_PORT)], env=env)


@contextlib.asynccontextmanager
async def reference_services(workdir: Path) -> AsyncIterator[dict[str, int | None]]:
    """Start every service in this (the internet) namespace; yield name -> pid."""
    settings = json.loads((workdir / "lab.json").read_text())
    async with AsyncExitStack() as stack:
        pids: dict[str, int | None] = {}
        for daemon in (dns_daemon(workdir), tls_daemon(workdir)):
            pids[daemon.name] = (await stack.enter_async_context(daemon)).pid
        from deploy.lab import relays

        for name, context in relays.contexts(workdir):
            pids[name] = await stack.enter_async_context(context)
        if settings.get("collector", True):
            daemon = collector_daemon(workdir, settings)
            pids["collector"] = (await stack.enter_async_context(daemon)).pid
        yield pids


async def supervise(workdir: Path) -> int:
    run = workdir / "run"
    run.mkdir(parents=True, exist_ok=True)
    for stale in ("ready", "failed", "services.json"):
        (run / stale).unlink(missing_ok=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with reference_services(workdir) as pids:
            (run / "services.json").write_text(json.dumps(pids))
            (run / "ready").write_text(str(os.getpid()))
            await stop.wait()
    except Exception as exc:  # any launcher's error: reported to `up` in one sentence
        (run / "failed").write_text(f"{type(exc).__name__}: {exc}")
        print(f"lab services: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m deploy.lab.services WORKDIR (inside the internet namespace)",
              file=sys.stderr)
        return 2
    return asyncio.run(supervise(Path(argv[0])))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
