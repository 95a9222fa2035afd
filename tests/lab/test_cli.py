"""`python -m deploy.lab` and the make targets: one sentence, the right exit
status, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.lab.conftest import require_root

LAB = [sys.executable, "-m", "deploy.lab"]


def as_nobody(argv: list[str]) -> subprocess.CompletedProcess[str]:
    require_root()  # to become someone else
    return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                           *argv], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "HOME": "/nonexistent"})


@pytest.mark.parametrize("command", [["up"], ["demo"], ["accuracy"], ["down"]])
def test_without_root_one_sentence_exit_2(command: list[str]) -> None:
    result = as_nobody([*LAB, *command])
    assert result.returncode == 2, result
    assert "needs root" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("target", ["demo", "accuracy"])
def test_make_without_root_says_so(target: str) -> None:
    result = as_nobody(["make", "--no-print-directory", target])
    assert result.returncode != 0
    assert f"make {target} needs root" in result.stderr
    assert "Traceback" not in result.stderr
    # nothing else ran: no set-up, no python
    assert "pip" not in result.stdout + result.stderr


def run_lab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LAB, *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_a_bad_scenario_file_is_named_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("description: x\npolicy:\n  cellular:\n    - {action: drop, ports: [53]}\n")
    result = run_lab("apply", str(bad))
    assert result.returncode == 2
    assert f"{bad}:4: policy.cellular.0: `ports` needs `proto: tcp` or `proto: udp`" \
        in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_scenario_and_bad_prefix() -> None:
    result = run_lab("run-scenario", "no-such-thing")
    assert result.returncode == 2 and "no scenario 'no-such-thing' (known: " in result.stderr
    result = run_lab("--prefix", "Bad-Prefix", "status")
    assert result.returncode == 2 and "lab prefix 'Bad-Prefix'" in result.stderr


def test_a_lab_that_is_not_up() -> None:
    require_root()
    result = run_lab("--prefix", f"vwlabn{os.getpid() % 100000}", "run-scenario", "all-open")
    assert result.returncode == 2
    assert "is not up: run `python -m deploy.lab --prefix" in result.stderr
