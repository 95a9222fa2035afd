"""`voipwatch-probe status`: the last pass (when, how many records, verdicts), the
spool (pending, rejected and why), the collector (reachable or not) and the
schedule, from the real console script against a real collector."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.collector.harness import Collector
from tests.conftest import BIN
from tests.probe.ui.test_cli import run_cli
from tests.support.tcp_servers import closed_port


@pytest.fixture
def listener() -> Iterator[int]:
    server = socket.create_server(("127.0.0.1", 0))
    yield server.getsockname()[1]
    server.close()


def field(output: str, name: str) -> str:
    match = re.search(rf"^{name}:\s+(.*)$", output, re.MULTILINE)
    assert match, output
    return match.group(1)


def test_a_fresh_probe(voipwatch_home: Path) -> None:
    result = run_cli("status")
    assert result.returncode == 0, result.stderr
    assert field(result.stdout, "state directory") == str(voipwatch_home)
    assert field(result.stdout, "last pass").startswith("none yet")
    assert field(result.stdout, "spool") == "empty"
    assert field(result.stdout, "collector").startswith("not registered")
    assert "crontab" in field(result.stdout, "schedule") or "crontab" in result.stdout


def test_last_pass_spool_and_collector(voipwatch_home: Path, tmp_path: Path,
                                       listener: int) -> None:
    catalogue = tmp_path / "loop.yaml"
    catalogue.write_text(f"""\
version: 1
services:
  - id: loop
    name: Loopback
    endpoints:
      - {{check: tcp, host: 127.0.0.1, port: {listener}, role: messaging}}
      - {{check: tcp, host: 127.0.0.1, port: {closed_port()}, role: call}}
""")
    output = tmp_path / "out.jsonl"
    with Collector(tmp_path / "collector", args=["--control-allow-private"]) as collector:
        assert run_cli("register", "--collector", collector.url).returncode == 0
        run = run_cli("run", "--catalogue", str(catalogue), "--no-upload", "--output",
                      str(output), "--link-type", "wifi")
        assert run.returncode == 0, run.stderr
        records = [json.loads(line) for line in output.read_text().splitlines()]
        status = run_cli("status").stdout
        last = field(status, "last pass")
        verdicts = Counter(r["verdict"] for r in records)
        assert f"{len(records)} records: " in last and "link type wifi" in last
        for verdict, count in verdicts.items():
            assert f"{count} {verdict}" in last
        assert re.search(r"\(\d+ s ago\)", last)
        assert field(status, "spool") == f"{len(records)} pending, 0 rejected"
        assert field(status, "collector") == f"{collector.url}: " + \
            re.search(r"reachable \(HTTP 200 in \d+ ms\)", status).group(0)  # type: ignore[union-attr]

        # a revoked key: the collector rejects the records, the spool keeps them and why
        key_id = field(status, "key").split("(")[1].rstrip(")")
        assert collector.cli("probes", "revoke", key_id).returncode == 0
        assert run_cli("upload").returncode != 0
        status = run_cli("status").stdout
        assert field(status, "spool") == f"0 pending, {len(records)} rejected"
        for record in records:
            assert re.search(rf"^  rejected {record['id']}: \S+", status, re.MULTILINE)
    stopped = field(run_cli("status").stdout, "collector")
    assert stopped.startswith(f"{collector.url}: unreachable: "), stopped
    assert field(run_cli("status", "--offline").stdout, "collector").endswith("not asked "
                                                                              "(--offline)")


def test_answers_without_heavy_imports(voipwatch_home: Path) -> None:
    (voipwatch_home).mkdir(parents=True, exist_ok=True)
    (voipwatch_home / "probe.toml").write_text(f'collector = "http://127.0.0.1:{closed_port()}"\n')
    keygen = run_cli("keygen")
    key_id = keygen.stdout.split("key id:")[1].split()[0]
    code = ("import sys; from probe.ui.cli import main; main(['status']); "
            "heavy = [m for m in ('pydantic', 'rich', 'httpx', 'cryptography') "
            "if m in sys.modules]; sys.exit(f'imported {heavy}' if heavy else 0)")
    result = subprocess.run([str(BIN / "python"), "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "unreachable" in result.stdout
    assert field(run_cli("status").stdout, "key").endswith(f"probe.key ({key_id})")


def test_a_collector_url_that_is_not_an_http_server(voipwatch_home: Path) -> None:
    """Bytes that are not HTTP at the collector's URL: status still answers, and
    says so in words (never the bytes, never a traceback)."""
    from tests.probe.upload.test_client import not_http_server

    voipwatch_home.mkdir(parents=True, exist_ok=True)
    with not_http_server() as url:
        (voipwatch_home / "probe.toml").write_text(f'collector = "{url}"\n')
        result = run_cli("status")
    assert result.returncode == 0, result.stderr
    assert field(result.stdout, "collector") == f"{url}: unreachable (not an HTTP server)"
    assert "GARBAGE" not in result.stdout + result.stderr and not result.stderr
