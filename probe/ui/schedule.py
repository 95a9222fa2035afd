"""When passes run: the systemd timers that deploy/pi/install.sh installs
(`voipwatch-probe.timer`: hourly, without the throttle tests;
`voipwatch-probe-full.timer`: daily, everything), or, without them, the
crontab lines that do the same.

`VOIPWATCH_UNIT_DIR` (default /etc/systemd/system) and `VOIPWATCH_SYSTEMCTL`
(default `systemctl`) point elsewhere, as install.sh's overrides do, so that a
test can install into a scratch directory.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NamedTuple

HOURLY = "voipwatch-probe.timer"
DAILY = "voipwatch-probe-full.timer"
TIMERS = (HOURLY, DAILY)
# schedule name -> the timers it enables
SCHEDULES: dict[str, tuple[str, ...]] = {"hourly": (HOURLY, DAILY), "daily": (DAILY,),
                                         "off": ()}
DESCRIPTION = {HOURLY: "hourly pass without the throttle tests",
               DAILY: "daily full pass with the throttle tests (up to 1 MB each)"}


def unit_dir() -> Path:
    return Path(os.environ.get("VOIPWATCH_UNIT_DIR") or "/etc/systemd/system")


def systemctl() -> list[str] | None:
    """The systemctl command line, or None when there is none to run."""
    import shlex
    import shutil

    command = shlex.split(os.environ.get("VOIPWATCH_SYSTEMCTL", "systemctl"))
    if not command or shutil.which(command[0]) is None:
        return None
    return command


def installed() -> list[str]:
    return [t for t in TIMERS if (unit_dir() / t).is_file()]


def enabled(timer: str) -> bool:
    """`systemctl enable` links the timer into timers.target.wants (its [Install])."""
    link = unit_dir() / "timers.target.wants" / timer
    return link.is_symlink() or link.exists()


def systemd_running() -> bool:
    """systemd is PID 1 here (not so in a container, or when preparing an image
    offline with `systemctl --root=DIR`, which can enable but not start)."""
    return Path("/run/systemd/system").is_dir()


class Applied(NamedTuple):
    done: list[str]
    failed: list[str]  # one sentence each, with the command to run by hand


def apply(schedule: str) -> Applied:
    """Enable the timers of `schedule`, disable the others."""
    import shlex
    import subprocess

    wanted = SCHEDULES[schedule]
    command = systemctl()
    done: list[str] = []
    failed: list[str] = []
    for timer in installed():
        action = "enable" if timer in wanted else "disable"
        if enabled(timer) == (action == "enable"):
            continue
        argv = [*(command or ["systemctl"]), action,
                *(["--now"] if systemd_running() else []), timer]
        if command is None:
            failed.append(f"no systemctl here; run: {shlex.join(argv)}")
            continue
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if result.returncode == 0:
            done.append(f"{action}d {timer}")
        else:
            why = (result.stderr.strip().splitlines() or ["failed"])[-1]
            failed.append(f"{shlex.join(argv)}: {why}"
                          + ("" if os.geteuid() == 0 else " (run it as root)"))
    return Applied(done, failed)


def probe_program() -> str:
    import shutil

    found = shutil.which("voipwatch-probe")
    argv0 = Path(sys.argv[0])
    if argv0.name == "voipwatch-probe" and argv0.exists():
        return str(argv0.resolve())
    return found or "voipwatch-probe"


def crontab_lines(schedule: str, home: Path) -> list[str]:
    import shlex

    program = probe_program()
    env = f"VOIPWATCH_HOME={shlex.quote(str(home))}"
    lines = []
    if HOURLY in SCHEDULES[schedule]:
        lines.append(f"17 * * * * {env} {program} run --skip throttle >/dev/null 2>&1")
    if DAILY in SCHEDULES[schedule]:
        lines.append(f"43 3 * * * {env} {program} run >/dev/null 2>&1")
    return lines


def describe(home: Path, schedule: str | None = None) -> list[str]:
    """What runs when, in a few lines: the timers if installed, else how to run it."""
    timers = installed()
    if not timers:
        lines = ["no systemd timers installed (deploy/pi/install.sh installs them)"]
        cron = crontab_lines(schedule or "hourly", home)
        if schedule == "off":
            return [*lines, "passes run only by hand: voipwatch-probe run"]
        return [*lines, "run a pass by hand with `voipwatch-probe run`, or add to your "
                "crontab (crontab -e):", *(f"  {line}" for line in cron)]
    lines = []
    for timer in timers:
        state = "enabled" if enabled(timer) else "not enabled"
        lines.append(f"{timer} ({DESCRIPTION[timer]}): {state}")
    command = systemctl()
    if command is not None and systemd_running():
        import subprocess

        result = subprocess.run([*command, "list-timers", "--all", "--no-pager", *timers],
                                capture_output=True, text=True, timeout=30)
        if result.returncode == 0:
            lines.extend(f"  {line}" for line in result.stdout.strip().splitlines()[:3])
    lines.append(f"logs: journalctl -u voipwatch-probe -u voipwatch-probe-full "
                 f"(units in {unit_dir()})")
    return lines
