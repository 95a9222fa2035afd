"""deploy/pi/install.sh, the real script, against a scratch prefix: its
prerequisite checks, the virtualenv it makes from the built wheel, the units
it writes (checked by `systemd-analyze verify`), the state directory and
config, the registration with a real collector, and the timers it enables
(real `systemctl --root`, which enables offline as when preparing an image;
systemd is not PID 1 in the test machine).

The account creation (`useradd`) is the one step left out (`--no-user`): a
test must not add system users to the machine it runs on."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.collector.harness import Collector
from tests.conftest import BIN, ROOT

SCRIPT = ROOT / "deploy" / "pi" / "install.sh"
UNITS = ("voipwatch-probe.service", "voipwatch-probe.timer", "voipwatch-probe-full.service",
         "voipwatch-probe-full.timer")


def needs(command: str, package: str) -> str:
    found = shutil.which(command)
    if found is None:
        pytest.fail(f"{command} is needed: apt-get install {package} "
                    "(deploy/install-system-deps.sh installs it)")
    return found


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    with Collector(tmp_path_factory.mktemp("pi-collector")) as running:
        yield running


def scratch_env(base: Path, **extra: str) -> dict[str, str]:
    root = base / "root"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "VIRTUAL_ENV", "VOIPWATCH_"))}
    env["PATH"] = ":".join(p for p in env.get("PATH", "/usr/bin:/bin").split(":")
                           if Path(p).resolve() != BIN.resolve())
    env.update(VOIPWATCH_PREFIX=str(base / "prefix"),
               VOIPWATCH_STATE=str(base / "state"),
               VOIPWATCH_UNIT_DIR=str(root / "etc" / "systemd" / "system"),
               VOIPWATCH_SYSTEMCTL=f"{needs('systemctl', 'systemd')} --root={root}",
               VOIPWATCH_PYTHON=sys._base_executable)
    env.update(extra)
    return env


def install(base: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=900, env=scratch_env(base, **env), cwd=base)


def test_install_into_a_scratch_prefix(tmp_path: Path, wheel: Path,
                                       collector: Collector) -> None:
    result = install(tmp_path, collector.url, "--link-type", "cellular", "--no-user",
                     VOIPWATCH_PACKAGE=str(wheel))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    env = scratch_env(tmp_path)
    prefix, state = Path(env["VOIPWATCH_PREFIX"]), Path(env["VOIPWATCH_STATE"])
    units = Path(env["VOIPWATCH_UNIT_DIR"])

    # the virtualenv works on its own
    probe = prefix / "bin" / "voipwatch-probe"
    version = subprocess.run([str(probe), "--version"], capture_output=True, text=True,
                             cwd=tmp_path, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("voipwatch-probe ")

    # the state directory: private, with the config and the key
    assert state.is_dir() and (state.stat().st_mode & 0o777) == 0o700
    config = tomllib.loads((state / "probe.toml").read_text())
    assert len(config.pop("collector_key")) == 44  # the collector's key, pinned
    assert config == {"collector": collector.url, "link_type": "cellular"}
    assert (state / "probe.key").is_file()

    # registered: the collector knows the key the status shows
    status = subprocess.run([str(probe), "status"], capture_output=True, text=True,
                            env={**env, "VOIPWATCH_HOME": str(state)}, timeout=60)
    key_id = status.stdout.split("probe.key (")[1].split(")")[0]
    assert key_id in collector.cli("probes", "list", check=True).stdout
    assert f"{collector.url}: reachable" in status.stdout

    # the units, with this install's paths, and both timers enabled
    for unit in UNITS:
        text = (units / unit).read_text()
        assert "/opt/voipwatch" not in text and "/var/lib/voipwatch" not in text
        if unit.endswith(".service"):
            assert f"exec {prefix}/bin/voipwatch-probe run" in text
            assert f"Environment=VOIPWATCH_HOME={state}" in text
            assert f"ReadWritePaths={state}" in text
            assert "StateDirectory" not in text  # it would mean /var/lib/voipwatch
    wants = units / "timers.target.wants"
    assert sorted(p.name for p in wants.iterdir()) == ["voipwatch-probe-full.timer",
                                                        "voipwatch-probe.timer"]
    verify = subprocess.run([needs("systemd-analyze", "systemd"), "verify",
                             *(str(units / u) for u in UNITS)],
                            capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stderr
    complaints = [line for line in verify.stderr.splitlines()
                  if any(u in line for u in UNITS) and "timers.target" not in line]
    assert not complaints, complaints


def test_the_shipped_units_verify(tmp_path: Path) -> None:
    """deploy/systemd/*, as shipped (the binaries they name pointed at this venv)."""
    for unit in (ROOT / "deploy" / "systemd").glob("*.*"):
        text = unit.read_text().replace("/opt/voipwatch/bin/", f"{BIN}/")
        (tmp_path / unit.name).write_text(text)
    files = sorted(str(p) for p in tmp_path.iterdir())
    verify = subprocess.run([needs("systemd-analyze", "systemd"), "verify", *files],
                            capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stderr
    assert not [line for line in verify.stderr.splitlines() if "voipwatch" in line], \
        verify.stderr


def refused(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    message = result.stderr.strip().splitlines()
    assert len(message) == 1 and message[0].startswith("install.sh: "), result.stderr
    for needle in needles:
        assert needle in message[0], message[0]


def test_missing_prerequisites_are_named(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9"
    refused(install(tmp_path, url, "--no-user", VOIPWATCH_PYTHON="/nonexistent/python3"),
            "/nonexistent/python3 not found", "apt install python3 python3-venv")
    old = tmp_path / "python3.9"  # answers the version question as Debian 11's python3 would
    old.write_text("#!/bin/sh\necho 3.9\n")
    old.chmod(0o755)
    refused(install(tmp_path, url, "--no-user", VOIPWATCH_PYTHON=str(old)),
            "Python 3.9 found", "3.11 or newer")
    refused(install(tmp_path, url, "--no-user", VOIPWATCH_SYSTEMCTL="/nonexistent/systemctl"),
            "not found: the timers need systemd")
    if not Path("/run/systemd/system").is_dir():  # as here: systemd is not PID 1
        refused(install(tmp_path, url, "--no-user", VOIPWATCH_SYSTEMCTL="systemctl"),
                "systemd is not running", "VOIPWATCH_SYSTEMCTL=")
    refused(install(tmp_path, "collector.example.org", "--no-user"), "expected an http://")
    refused(install(tmp_path, url, "--schedule", "weekly"), "--schedule weekly")
    refused(install(tmp_path, url, "--frobnicate"), "unknown option --frobnicate")
    # nothing was created by a refused install
    assert not (tmp_path / "prefix").exists() and not (tmp_path / "state").exists()
