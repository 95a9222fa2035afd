"""Running `ip`, `nft`, `tc` and processes inside the lab's namespaces.

Every command goes through `run`, which turns a failure into a `LabError`
naming the command and what it printed, so the CLI can end with one sentence.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


class LabError(Exception):
    """Something the lab could not do; the message is one sentence for the user."""

    exit_status = 1


class UsageError(LabError):
    """The user's mistake: a bad scenario file, no lab up, a bad prefix."""

    exit_status = 2


class NeedsRoot(UsageError):
    pass


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise NeedsRoot(f"{what} needs root (network namespaces and nftables): "
                        "run it as root, e.g. with sudo")


def require_tools(*names: str) -> None:
    missing = [n for n in names if shutil.which(n) is None and not Path("/usr/sbin", n).exists()]
    if missing:
        raise LabError(f"missing {', '.join(missing)}: run deploy/install-system-deps.sh as root")


def netns_exec(namespace: str | None, argv: Sequence[str]) -> list[str]:
    """`argv` run inside `namespace` (unchanged when None). `ip netns exec` also
    bind-mounts /etc/netns/NS/resolv.conf, which gives each host its resolver."""
    return ["ip", "netns", "exec", namespace, *argv] if namespace else list(argv)


def run(argv: Sequence[str], *, namespace: str | None = None, input: str | None = None,
        check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    command = netns_exec(namespace, argv)
    try:
        result = subprocess.run(command, input=input, capture_output=True, text=True,
                                timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise LabError(f"{command[0]} is not installed: run deploy/install-system-deps.sh") \
            from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"`{' '.join(command)}` did not finish within {timeout:g} s") from exc
    if check and result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        detail = lines[-1] if lines else f"exit status {result.returncode}"
        raise LabError(f"`{' '.join(command)}` failed: {detail}")
    return result


def namespaces() -> list[str]:
    result = run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in result.stdout.splitlines() if line.strip()]


def namespace_pids(namespace: str) -> list[int]:
    result = run(["ip", "netns", "pids", namespace], check=False)
    return [int(p) for p in result.stdout.split() if p.isdigit()]


def kill_namespace_processes(namespace: str, grace: float = 3.0) -> int:
    """SIGTERM every process in the namespace, then SIGKILL what is left."""
    pids = namespace_pids(namespace)
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        time.sleep(0.05)
        pids = [p for p in pids if _alive(p)]
    for pid in pids:
        _signal(pid, signal.SIGKILL)
    return len(pids)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie still answers kill(0); it has released its namespace already
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def pid_alive(pid: int) -> bool:
    return _alive(pid)
