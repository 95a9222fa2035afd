"""`voipwatch-probe setup`: flags, or questions on a terminal for the missing
ones; the config written, the key created and registered with a real
collector, and the schedule shown, or applied to systemd timers installed in
a scratch directory (real `systemctl --root`, which enables offline)."""

from __future__ import annotations

import os
import pty
import select
import shutil
import signal
import subprocess
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.collector.harness import Collector
from tests.conftest import ROOT, probe_command
from tests.probe.ui.test_cli import assert_user_error, run_cli
from tests.support.tcp_servers import closed_port


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    with Collector(tmp_path_factory.mktemp("setup-collector")) as running:
        yield running


def registered(collector: Collector, home: Path) -> bool:
    key_id = run_cli("status", "--offline", home=home).stdout.split("(")[1].split(")")[0]
    return key_id in collector.cli("probes", "list", check=True).stdout


def config(home: Path) -> dict[str, str]:
    """The probe config, less the collector key pinned at registration (checked here)."""
    values = tomllib.loads((home / "probe.toml").read_text())
    assert len(values.pop("collector_key", "")) == 44  # base64 of a 32-byte key
    return values


def test_flags_write_register_and_show_how_to_schedule(collector: Collector,
                                                       voipwatch_home: Path) -> None:
    result = run_cli("setup", "--collector", collector.url, "--link-type", "adsl", "--no-input")
    assert result.returncode == 0, result.stderr
    assert config(voipwatch_home) == {"collector": collector.url, "link_type": "adsl"}
    assert (voipwatch_home / "probe.key").exists() and registered(collector, voipwatch_home)
    # no timers here: the crontab lines that do the same
    assert "no systemd timers installed" in result.stdout
    assert f"VOIPWATCH_HOME={voipwatch_home} " in result.stdout
    assert "run --skip throttle" in result.stdout
    # again, to change the link type: the same key, still registered
    again = run_cli("setup", "--collector", collector.url, "--link-type", "auto", "--no-input")
    assert again.returncode == 0 and "created a new probe key" not in again.stdout
    assert config(voipwatch_home) == {"collector": collector.url}


@pytest.fixture
def unit_root(tmp_path: Path) -> Path:
    if shutil.which("systemctl") is None:
        pytest.fail("systemctl is needed (Debian package systemd)")
    root = tmp_path / "root"
    units = root / "etc" / "systemd" / "system"
    units.mkdir(parents=True)
    for unit in (ROOT / "deploy" / "systemd").glob("voipwatch-probe*"):
        shutil.copy(unit, units)
    return root


def test_schedule_enables_the_installed_timers(collector: Collector, voipwatch_home: Path,
                                               unit_root: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    units = unit_root / "etc" / "systemd" / "system"
    monkeypatch.setenv("VOIPWATCH_UNIT_DIR", str(units))
    monkeypatch.setenv("VOIPWATCH_SYSTEMCTL", f"systemctl --root={unit_root}")
    wants = units / "timers.target.wants"
    daily = run_cli("setup", "--collector", collector.url, "--schedule", "daily", "--no-input")
    assert daily.returncode == 0, daily.stderr
    assert sorted(p.name for p in wants.iterdir()) == ["voipwatch-probe-full.timer"]
    assert "voipwatch-probe-full.timer (daily full pass" in daily.stdout
    assert "voipwatch-probe.timer (hourly pass without the throttle tests): not enabled" \
        in daily.stdout
    hourly = run_cli("setup", "--collector", collector.url, "--schedule", "hourly", "--no-input")
    assert hourly.returncode == 0
    assert sorted(p.name for p in wants.iterdir()) == ["voipwatch-probe-full.timer",
                                                        "voipwatch-probe.timer"]
    status = run_cli("status", "--offline").stdout
    assert "voipwatch-probe.timer (hourly pass without the throttle tests): enabled" in status
    off = run_cli("setup", "--collector", collector.url, "--schedule", "off", "--no-input")
    assert off.returncode == 0
    assert not wants.exists() or not list(wants.iterdir())
    # a systemctl that fails: said, and exit status 1 (the machine's, not the input's)
    monkeypatch.setenv("VOIPWATCH_SYSTEMCTL", "false")
    failed = run_cli("setup", "--collector", collector.url, "--schedule", "daily", "--no-input")
    assert failed.returncode == 1 and "could not apply the schedule: false enable" \
        in failed.stderr, failed.stderr


def converse(argv: list[str], answers: dict[str, str], home: Path,
             timeout: float = 60) -> tuple[int, str]:
    """Run on a pseudo-terminal, answering each question when its prompt shows."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the real console script, on the terminal
        os.environ["VOIPWATCH_HOME"] = str(home)
        os.execv(argv[0], argv)
    seen = b""
    answered = 0  # what was on the terminal when the last answer went in
    pending = list(answers.items())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child is gone
                break
            if not chunk:
                break
            seen += chunk
        # a prompt is complete when the terminal shows ": " and waits
        if pending and pending[0][0].encode() in seen[answered:] and seen.endswith(b": "):
            os.write(fd, pending.pop(0)[1].encode() + b"\n")
            answered = len(seen)
    else:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), seen.decode(errors="replace")


def test_questions_on_a_terminal(collector: Collector, voipwatch_home: Path) -> None:
    code, transcript = converse([*probe_command(), "setup"], {
        "Collector URL": "collector.example.org",  # not a URL: asked again
        "expected an http:// or https:// URL": collector.url,
        "Enrollment token": "",
        "How is this machine connected?": "5g",  # not a choice: asked again
        "please answer one of": "wifi",
        "When to measure": "off",
    }, voipwatch_home)
    assert code == 0, transcript
    assert "please answer one of: auto, cellular, wifi, ethernet, adsl" in transcript
    assert "'collector.example.org': expected an http:// or https:// URL" in transcript
    assert config(voipwatch_home) == {"collector": collector.url, "link_type": "wifi"}
    assert registered(collector, voipwatch_home)
    assert "passes run only by hand" in transcript


def test_user_errors(voipwatch_home: Path, collector: Collector) -> None:
    assert_user_error(run_cli("setup", "--no-input"), "no collector", "--collector URL")
    assert_user_error(run_cli("setup", "--collector", "collector.example.org", "--no-input"),
                      "expected an http:// or https:// URL")
    assert_user_error(run_cli("setup", "--collector", collector.url, "--schedule", "weekly",
                              "--no-input"), "invalid choice")
    assert not (voipwatch_home / "probe.key").exists()  # nothing written for bad input
    dead = run_cli("setup", "--collector", f"http://127.0.0.1:{closed_port()}", "--no-input")
    assert dead.returncode != 0 and "cannot reach the collector" in dead.stderr
    assert "Traceback" not in dead.stderr


def test_enrollment_token(tmp_path: Path, voipwatch_home: Path) -> None:
    with Collector(tmp_path / "strict", args=["--require-token"]) as strict:
        token = strict.cli("token", "create", "--uses", "1", check=True).stdout.strip()
        refused = run_cli("setup", "--collector", strict.url, "--no-input")
        assert refused.returncode != 0 and "refused the registration" in refused.stderr
        accepted = run_cli("setup", "--collector", strict.url, "--token", token, "--no-input")
        assert accepted.returncode == 0, accepted.stderr
        assert registered(strict, voipwatch_home)
        assert "token" not in config(voipwatch_home)  # a secret used once is not kept


def test_subprocess_is_the_console_script() -> None:
    assert Path(probe_command()[0]).name == "voipwatch-probe"
    assert subprocess.run([*probe_command(), "setup", "--help"], capture_output=True,
                          timeout=30).returncode == 0


def test_a_configured_key_file_that_is_missing(voipwatch_home: Path, tmp_path: Path,
                                               collector: Collector) -> None:
    """probe.toml names a key file that is not there (an unmounted disk, a typo):
    setup says so and creates no other identity; only the default key is made
    on first use."""
    missing = tmp_path / "nonexistent" / "k"
    voipwatch_home.mkdir(parents=True)
    (voipwatch_home / "probe.toml").write_text(f'key_file = "{missing}"\n')
    assert_user_error(run_cli("setup", "--collector", collector.url, "--no-input"),
                      f"key_file {missing} does not exist", "voipwatch-probe keygen")
    assert not missing.parent.exists() and not (voipwatch_home / "probe.key").exists()
    assert (voipwatch_home / "probe.toml").read_text() == f'key_file = "{missing}"\n'


def test_a_state_directory_that_cannot_be_written(voipwatch_home: Path,
                                                  collector: Collector) -> None:
    voipwatch_home.mkdir(parents=True)
    (voipwatch_home / "probe.toml.tmp").mkdir()  # the config cannot be put in place
    assert_user_error(run_cli("setup", "--collector", collector.url, "--no-input"),
                      f"cannot write the probe config {voipwatch_home / 'probe.toml'}")
    assert not (voipwatch_home / "probe.key").exists()  # nothing sent, nothing made
