"""What users run: the built wheel installed into a fresh virtualenv outside the
checkout, its commands run from another directory with nothing of the checkout
importable, and the systemd units' exact ExecStart command lines.

The probe's default catalogue is run only inside an empty network namespace
(no interface but a loopback that is down), so no packet can leave."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.collector.harness import Collector
from tests.conftest import ROOT, in_ci
from tests.support.tcp_servers import closed_port

UNITS = ROOT / "deploy" / "systemd"
INSTALLED_BIN = "/opt/voipwatch/bin/"  # where the units and install.sh expect the venv


@dataclass
class Install:
    venv: Path
    elsewhere: Path  # a working directory far from the checkout

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    def env(self, home: Path, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        env["PATH"] = f"{self.bin}:{env.get('PATH', '/usr/bin:/bin')}"
        env["VOIPWATCH_HOME"] = str(home)
        env.update(extra)
        return env

    def run(self, *argv: str, home: Path, timeout: float = 120, prefix: tuple[str, ...] = (),
            **extra: str) -> subprocess.CompletedProcess[str]:
        command = [*prefix, str(self.bin / argv[0]), *argv[1:]]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              cwd=self.elsewhere, env=self.env(home, **extra))


def _pip(venv: Path, *args: str) -> None:
    result = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                             "--disable-pip-version-check", *args],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def bare(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Install:
    """The wheel alone, without the `collector` extra, as deploy/pi/install.sh installs it."""
    base = tmp_path_factory.mktemp("install")
    venv = base / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", str(venv)], check=True, timeout=120)
    _pip(venv, str(wheel))
    elsewhere = base / "elsewhere"
    elsewhere.mkdir()
    return Install(venv, elsewhere)


@pytest.fixture(scope="module")
def full(bare: Install, wheel: Path) -> Install:
    """The same virtualenv with the collector's extra."""
    _pip(bare.venv, f"{wheel}[collector]")
    return bare


def test_the_probe_runs_from_the_wheel_alone(bare: Install, tmp_path: Path) -> None:
    home = tmp_path / "home"
    version = bare.run("voipwatch-probe", "--version", home=home)
    assert version.returncode == 0 and re.match(r"voipwatch-probe \d", version.stdout)
    # the checkout is nowhere on the path: the installed package answers
    where = subprocess.run([str(bare.bin / "python"), "-c",
                            "import probe, probe.catalogue as c; print(probe.__file__); "
                            "print(c.DEFAULT_CATALOGUE)"],
                           capture_output=True, text=True, cwd=bare.elsewhere,
                           env=bare.env(home), check=True).stdout.split()
    assert all(str(bare.venv) in line and str(ROOT) not in line for line in where)
    assert Path(where[1]).is_file()
    keygen = bare.run("voipwatch-probe", "keygen", home=home)
    assert keygen.returncode == 0, keygen.stderr
    assert (home / "probe.key").exists()


def test_the_collector_without_its_extra_says_how_to_install_it(bare: Install,
                                                                 tmp_path: Path) -> None:
    for argv in (["serve"], ["export", "--format", "jsonl", "--out", "x.jsonl"],
                 ["probes", "list"]):
        result = bare.run("voipwatch-collector", *argv, home=tmp_path)
        assert result.returncode == 2, result.stderr
        assert "pip install 'voipwatch[collector]'" in result.stderr
        assert "internal error" not in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def _loopback_catalogue(path: Path, open_port: int, dead_port: int) -> Path:
    path.write_text(f"""\
version: 1
services:
  - id: loop
    name: Loopback
    endpoints:
      - {{check: tcp, host: 127.0.0.1, port: {open_port}, role: messaging}}
      - {{check: tcp, host: 127.0.0.1, port: {dead_port}, role: call}}
""")
    return path


@pytest.fixture
def listener() -> Iterator[int]:
    server = socket.create_server(("127.0.0.1", 0))
    server.listen(16)
    yield server.getsockname()[1]
    server.close()


def test_probe_and_collector_from_the_wheel(full: Install, tmp_path: Path,
                                            listener: int) -> None:
    """keygen, register, run on a loopback catalogue, upload, export, verify: all
    installed commands, run from a directory outside the checkout."""
    home = tmp_path / "home"
    catalogue = _loopback_catalogue(tmp_path / "loop.yaml", listener, closed_port())
    collector = Collector(tmp_path / "collector", args=["--control-allow-private"],
                          env=full.env(home), program=str(full.bin / "voipwatch-collector"),
                          cwd=full.elsewhere)
    with collector:
        assert full.run("voipwatch-probe", "keygen", home=home).returncode == 0
        registered = full.run("voipwatch-probe", "register", "--collector", collector.url,
                              home=home)
        assert registered.returncode == 0, registered.stderr
        output = tmp_path / "out.jsonl"
        run = full.run("voipwatch-probe", "run", "--catalogue", str(catalogue),
                       "--output", str(output), "--link-type", "ethernet", home=home)
        assert run.returncode == 0, run.stderr
        records = [json.loads(line) for line in output.read_text().splitlines()]
        verdicts = {r["endpoint"]["port"]: r["verdict"] for r in records}
        assert verdicts[listener] == "open" and len(verdicts) == 2
        verified = full.run("voipwatch-probe", "verify", str(output), home=home)
        assert verified.returncode == 0 and "2 records, all signatures valid" in verified.stdout

        export = tmp_path / "export.jsonl"
        exported = collector.cli("export", "--format", "jsonl", "--out", str(export))
        assert exported.returncode == 0, exported.stderr
        rows = [json.loads(line) for line in export.read_text().splitlines()]
        assert {row["measurement"]["id"] for row in rows} == {r["id"] for r in records}
        reverified = full.run("voipwatch-probe", "verify", str(export), home=home)
        assert reverified.returncode == 0, reverified.stdout + reverified.stderr


# --- the systemd units' own command lines ----------------------------------------------


def unit_exec(unit: str, install: Install) -> tuple[list[str], dict[str, str]]:
    """A unit's ExecStart as argv, with its Environment= lines, /opt/voipwatch
    replaced by the test's virtualenv."""
    env: dict[str, str] = {}
    argv: list[str] = []
    for line in (UNITS / unit).read_text().splitlines():
        if line.startswith("Environment="):
            name, _, value = line.removeprefix("Environment=").partition("=")
            env[name] = value
        elif line.startswith("ExecStart="):
            command = line.removeprefix("ExecStart=").replace(INSTALLED_BIN, f"{install.bin}/")
            argv = shlex.split(command)
    assert argv, f"{unit} has no ExecStart"
    return argv, env


def netns_problem() -> str | None:
    if os.geteuid() != 0:
        return "needs root (an empty network namespace)"
    return None


@pytest.fixture
def empty_netns() -> Iterator[str]:
    """A network namespace with no route anywhere: the default catalogue runs
    there without sending a packet."""
    problem = netns_problem()
    if problem:
        if in_ci():
            pytest.fail(f"the installed-unit test {problem}")
        pytest.skip(problem)
    name = f"vwi{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


@pytest.mark.parametrize("unit", ["voipwatch-probe.service", "voipwatch-probe-full.service"])
def test_probe_units_run_the_packaged_catalogue(unit: str, full: Install, tmp_path: Path,
                                                empty_netns: str) -> None:
    """The timers' command lines, as written, with the catalogue the wheel ships:
    no network at all, so every verdict is `inconclusive`, and the pass completes."""
    argv, env = unit_exec(unit, full)
    home = tmp_path / "state"
    env["VOIPWATCH_HOME"] = str(home)
    if unit == "voipwatch-probe-full.service":
        # the daily pass with one service, its throttle test included
        env["VOIPWATCH_RUN_ARGS"] = "--services signal --timeout 1"
    else:
        env["VOIPWATCH_RUN_ARGS"] = "--timeout 1"
    result = subprocess.run(["ip", "netns", "exec", empty_netns, *argv], capture_output=True,
                            text=True, timeout=300, cwd=full.elsewhere,
                            env={**full.env(home), **env})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "catalogue not found" not in result.stderr
    status = full.run("voipwatch-probe", "status", home=home)
    pending = re.search(r"(\d+) pending", status.stdout)
    assert pending and int(pending.group(1)) > 0, status.stdout


def test_collector_unit_serves(full: Install, tmp_path: Path) -> None:
    argv, env = unit_exec("voipwatch-collector.service", full)
    assert argv == [str(full.bin / "voipwatch-collector"), "serve"]
    data = tmp_path / "collector-home"
    data.mkdir()
    env["VOIPWATCH_COLLECTOR_HOME"] = str(data)
    # the unit's own command line; the port comes from the environment (8470 may be taken)
    env["VOIPWATCH_COLLECTOR_PORT"] = "0"
    collector = Collector(tmp_path, env={**full.env(tmp_path), **env}, command=argv,
                          cwd=full.elsewhere)
    with collector:
        assert collector.client().get("/healthz").status_code == 200
    assert any(data.iterdir())  # its database lives under VOIPWATCH_COLLECTOR_HOME
