"""VOIPWATCH_LAB_CLOCK: a lab replay dates its records in the past, and every
such record says it is a replay, under its signature."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from probe.store.spool import Spool
from tests.conftest import probe_command
from tests.support.tcp_servers import closed_port, tcp_server


def catalogue(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "catalogue.yaml"
    path.write_text(f"""\
version: 1
services:
  - id: local
    name: Local
    endpoints:
      - {{check: tcp, host: 127.0.0.1, port: {port}, role: messaging}}
      - {{check: tcp, host: 127.0.0.1, port: {port}, role: call}}
""")
    return path


def run(tmp_path: Path, port: int, clock: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "VOIPWATCH_LAB_CLOCK"}
    if clock is not None:
        env["VOIPWATCH_LAB_CLOCK"] = clock
    # the control is a closed port: verdicts are inconclusive, which is beside the point here
    return subprocess.run(
        [*probe_command(), "run", "--catalogue", str(catalogue(tmp_path, port)), "--no-upload",
         "--json", "--control", f"http://127.0.0.1:{closed_port()}", "--output",
         str(tmp_path / "out.jsonl")], env=env, capture_output=True, text=True, timeout=60)


async def test_replayed_records_are_backdated_and_marked(tmp_path: Path) -> None:
    async with tcp_server() as port:
        before = datetime.now(UTC)
        result = run(tmp_path, port, "2016-01-15T10:00:00Z")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 2
    for record in records:
        started = datetime.fromisoformat(record["started_at"].replace("Z", "+00:00"))
        assert timedelta(0) <= started - datetime(2016, 1, 15, 10, tzinfo=UTC) < timedelta(
            seconds=30)
        assert record["network"]["replay"] is True
        assert record["lab_clock"]["clock"] == record["started_at"]
        assert record["evidence"]["lab_clock"] == record["lab_clock"]
        real = datetime.fromisoformat(record["lab_clock"]["real_started_at"].replace("Z",
                                                                                   "+00:00"))
        assert before - timedelta(seconds=1) <= real <= datetime.now(UTC)
    # the markers are under the signature: removing one breaks it
    verify = subprocess.run([*probe_command(), "verify", str(tmp_path / "out.jsonl")],
                            capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0, verify.stdout
    tampered = dict(records[0])
    tampered["network"] = {k: v for k, v in tampered["network"].items() if k != "replay"}
    (tmp_path / "tampered.jsonl").write_text(json.dumps(tampered) + "\n")
    verify = subprocess.run([*probe_command(), "verify", str(tmp_path / "tampered.jsonl")],
                            capture_output=True, text=True, timeout=60)
    assert verify.returncode != 0


async def test_without_the_variable_nothing_changes(tmp_path: Path) -> None:
    async with tcp_server() as port:
        result = run(tmp_path, port, None)
    assert result.returncode == 0, result.stderr
    for record in map(json.loads, result.stdout.splitlines()):
        assert "replay" not in record["network"] and "lab_clock" not in record
        assert "lab_clock" not in record["evidence"]
        started = datetime.fromisoformat(record["started_at"].replace("Z", "+00:00"))
        assert abs(datetime.now(UTC) - started) < timedelta(minutes=1)


async def test_a_bad_clock_is_a_user_error_before_any_traffic(tmp_path: Path,
                                                               voipwatch_home: Path) -> None:
    async with tcp_server() as port:
        for bad in ("15/01/2016", "2016-01-15T10:00:00"):  # the second has no zone
            result = run(tmp_path, port, bad)
            assert result.returncode == 2, result
            assert "Traceback" not in result.stderr
            assert "VOIPWATCH_LAB_CLOCK" in result.stderr and "RFC 3339" in result.stderr
            errors = [line for line in result.stderr.splitlines() if "error" in line]
            assert len(errors) == 1 and "VOIPWATCH_LAB_CLOCK" in errors[0], result.stderr
    with Spool(voipwatch_home / "spool.sqlite3") as spool:
        assert spool.counts()["pending"] == 0
