"""Real reference daemons (coturn, Kamailio) for the tests, the censorship lab
and the WebRTC tests.

Each launcher writes its configuration into a directory of its own, starts the
daemon bound to the given addresses and ports (inside a network namespace when
`netns` is given), waits until every listener is open, and stops it on exit,
killing its whole process group if it does not stop in time. Use it as a
context manager, sync or async:

    with Coturn(tmp_path, users={"u": "p"}) as turn: ...      # turn.port, turn.tls_port
    async with Kamailio(workdir, netns="vwlab-net") as sip: ...

Readiness is read from the daemon's own view of the network
(/proc/PID/net/{tcp,udp}[6]), matched against the sockets its processes hold,
so it works inside a namespace and ignores another program on the same port.
A daemon that binds before its last start-up checks (Kamailio loads its TLS
files after binding) is ready only once it has forked its workers too.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import ipaddress
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

__all__ = ["Daemon", "Listener", "ServiceError", "free_port"]

READY_TIMEOUT = 15.0
STOP_GRACE = 5.0
_PR_SET_PDEATHSIG = 1
_RUNNING: set[Daemon] = set()


class ServiceError(Exception):
    """A daemon could not start; the message names it and quotes its log."""


@dataclass(frozen=True)
class Listener:
    proto: str  # "udp" | "tcp"
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.proto} {self.host}:{self.port}"


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on `host` right now (daemons like coturn
    need explicit ports; bind port 0 to find one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        with socket.socket(family, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = tcp.getsockname()[1]
            with socket.socket(family, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
        return int(port)
    raise ServiceError(f"no port free for both UDP and TCP on {host}")


try:  # resolved here: dlopen() in a forked child of a threaded parent may deadlock
    _PRCTL: Any = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _PRCTL = None


def _die_with_parent() -> None:
    """In the child: SIGKILL when the parent dies, so a crashed test leaves nothing."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


class Daemon:
    """Base launcher: subclasses give `name`, `write_config`, `command` and `listeners`."""

    name = "daemon"
    # A daemon that binds its sockets, then checks the rest of its configuration (TLS
    # files) before forking its workers: open listeners alone do not mean it is up.
    forks_workers = False

    def __init__(self, directory: Path | str, *, netns: str | None = None,
                 ready_timeout: float = READY_TIMEOUT) -> None:
        self.directory = Path(directory)
        self.netns = netns
        self.ready_timeout = ready_timeout
        self.process: subprocess.Popen[bytes] | None = None

    # --- what subclasses provide ------------------------------------------------------
    def write_config(self) -> None:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def listeners(self) -> list[Listener]:
        raise NotImplementedError

    # --- life cycle ---------------------------------------------------------------------
    @property
    def log_path(self) -> Path:
        return self.directory / f"{self.name}.log"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def launch(self) -> None:
        """Write the configuration and start the process (not waiting for it)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.write_config()
        argv = self.command()
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        main_thread = threading.current_thread() is threading.main_thread()
        with self.log_path.open("ab") as log:
            try:
                self.process = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    cwd=self.directory, start_new_session=True,
                    # PDEATHSIG fires when the forking *thread* ends: main thread only
                    preexec_fn=_die_with_parent if main_thread else None)
            except OSError as exc:
                raise ServiceError(f"{self.name}: cannot run {argv[0]}: {exc.strerror} "
                                   "(run deploy/install-system-deps.sh)") from exc
        _RUNNING.add(self)

    def missing(self) -> list[Listener]:
        """Listeners not open yet; ServiceError if the daemon has exited."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise ServiceError(f"{self.name} exited with status {self.process.returncode} at "
                               f"start; last lines of {self.log_path}:\n{self.log_tail()}")
        pending = _missing_listeners(self.process.pid, self.listeners())
        if not pending and self.forks_workers and len(_group_members(self.process.pid)) < 2:
            return [_WORKERS]
        return pending

    def _timed_out(self, pending: list[Listener]) -> ServiceError:
        what = "start its workers" if pending[0] is _WORKERS else f"open {pending[0]}"
        return ServiceError(f"{self.name} did not {what} within "
                            f"{self.ready_timeout:g} s; last lines of {self.log_path}:\n"
                            f"{self.log_tail()}")

    def start(self) -> Self:
        self.launch()
        deadline = time.monotonic() + self.ready_timeout
        try:
            while pending := self.missing():
                if time.monotonic() > deadline:
                    raise self._timed_out(pending)
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise
        return self

    async def astart(self) -> Self:
        self.launch()
        deadline = time.monotonic() + self.ready_timeout
        try:
            while pending := self.missing():
                if time.monotonic() > deadline:
                    raise self._timed_out(pending)
                await asyncio.sleep(0.05)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """SIGTERM to the daemon's process group, SIGKILL after a grace period."""
        process, self.process = self.process, None
        _RUNNING.discard(self)
        if process is None:
            return
        _signal_group(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(STOP_GRACE)
        _signal_group(process.pid, signal.SIGKILL)  # also any child left behind
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(STOP_GRACE)

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:]) or "(empty log)"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await self.astart()

    async def __aexit__(self, *exc: object) -> None:
        await self.astop()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


@atexit.register
def _stop_all() -> None:
    for daemon in list(_RUNNING):
        daemon.stop()


# --- readiness from /proc ---------------------------------------------------------------

_TCP_LISTEN, _UDP_BOUND = "0A", "07"


_WORKERS = Listener("workers", "", 0)  # "not ready": listeners open, no worker forked yet


def _group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of a process group."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z" and int(fields[2]) == pgid:
                members.append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return members


def _group_socket_inodes(pgid: int) -> set[str]:
    """Inodes of the sockets held by the processes of a process group."""
    inodes: set[str] = set()
    for pid in _group_members(pgid):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    return inodes


def _decode_address(text: str) -> tuple[Any, int]:
    """`0100007F:1F90` (kernel byte order, 32-bit words) -> (address, port)."""
    hex_address, hex_port = text.split(":")
    raw = bytes.fromhex(hex_address)
    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(raw), int(hex_port, 16)


def _missing_listeners(pid: int, wanted: list[Listener]) -> list[Listener]:
    inodes = _group_socket_inodes(pid)
    open_now: set[tuple[str, Any, int]] = set()
    for proto, state in (("tcp", _TCP_LISTEN), ("udp", _UDP_BOUND)):
        for suffix in ("", "6"):
            try:
                lines = Path(f"/proc/{pid}/net/{proto}{suffix}").read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                if len(fields) > 9 and fields[3] == state and fields[9] in inodes:
                    address, port = _decode_address(fields[1])
                    open_now.add((proto, address, port))
    missing = []
    for listener in wanted:
        address = ipaddress.ip_address(listener.host)
        wildcard = ipaddress.ip_address("::" if address.version == 6 else "0.0.0.0")
        if not ({(listener.proto, address, listener.port),
                 (listener.proto, wildcard, listener.port)} & open_now):
            missing.append(listener)
    return missing
