"""A command's own wall time and peak memory, for the benches.

The max RSS that `wait4` reports for a child counts the memory it had before
its `exec`: Linux keeps the larger of the address space `exec` replaced and
the new one's peak, and a child forked (or vforked) from a bench process that
holds 300 MB measures 300 MB whatever it runs. So `run` starts a small fresh
interpreter that forks the command and reports that grandchild's own peak,
as GNU time does.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

_LAUNCH = """\
import os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(f"{time.perf_counter() - start} {usage.ru_maxrss}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


@dataclass(frozen=True)
class Run:
    seconds: float  # from the fork to the command's exit
    peak_mib: float  # the command's own max RSS
    status: int  # its exit status


def run(argv: list[str], **popen: Any) -> Run:
    """Run `argv` (found on PATH like `subprocess`), with `popen`'s stdin,
    stdout, stderr, env and cwd, to its end."""
    with tempfile.NamedTemporaryFile("r", prefix="vw-peak-") as figures:
        status = subprocess.run([sys.executable, "-c", _LAUNCH, figures.name, *argv],
                                check=False, **popen).returncode
        text = figures.read().split()
    if len(text) != 2:  # the launcher itself failed: say why rather than a peak of 0
        raise SystemExit(f"bench: could not run {argv[0]!r} (status {status})")
    return Run(float(text[0]), int(text[1]) / 1024, status)

