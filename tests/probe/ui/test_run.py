"""`voipwatch-probe run` end to end against real servers on loopback."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from probe.store.spool import Spool
from tests.conftest import probe_command
from tests.support.dns_server import NXDOMAIN, DnsServer
from tests.support.pki import TestCA
from tests.support.tcp_servers import closed_port, tcp_server

ZONE = {"open.test": ["93.184.216.34"], "gone.test": NXDOMAIN, "bogon.test": ["10.9.8.7"]}


def catalogue(tcp_port: int, tls_port: int, dead_port: int) -> str:
    return f"""\
version: 1
services:
  - id: chat
    name: Chat
    endpoints:
      - {{check: dns, host: open.test, role: messaging}}
      - {{check: tcp, host: 127.0.0.1, port: {tcp_port}, role: messaging}}
      - {{check: tls, host: 127.0.0.1, port: {tls_port}, sni: chat.test, role: messaging}}
  - id: censored
    name: Censored
    endpoints:
      - {{check: dns, host: gone.test, role: messaging}}
      - {{check: dns, host: bogon.test, role: call}}
      - {{check: tcp, host: 127.0.0.1, port: {dead_port}, role: call}}
"""


async def probe_run(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *probe_command(), "run", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    ca = TestCA(tmp_path)
    leaf = ca.issue("chat.test")
    async with DnsServer(ZONE) as dns, tcp_server() as tcp_port, \
            tcp_server(ssl_context=leaf.server_context()) as tls_port, \
            tcp_server(mode="reset_on_data") as control_port:
        path = tmp_path / "catalogue.yaml"
        path.write_text(catalogue(tcp_port, tls_port, closed_port()))
        env = dict(os.environ, SSL_CERT_FILE=str(ca.path))
        yield {"catalogue": path, "dns": dns, "env": env, "control_port": control_port}


def by_endpoint(records: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(r["service"], r["endpoint"]["check"], r["endpoint"]["host"]): r for r in records}


async def test_full_pass_without_a_control(lab: dict[str, Any], tmp_path: Path,
                                           voipwatch_home: Path) -> None:
    output = tmp_path / "out.jsonl"
    # the control URL accepts TCP (the pre-check passes) but resets any request:
    # so there is no control answer, and only self-evident failures are `blocked`
    code, out, err = await probe_run(
        "--catalogue", str(lab["catalogue"]), "--no-upload", "--json",
        "--resolver", f"127.0.0.1:{lab['dns'].port}", "--output", str(output),
        "--control", f"http://127.0.0.1:{lab['control_port']}", "--link-type", "adsl",
        env=lab["env"])
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 6
    results = by_endpoint(records)
    assert results["chat", "dns", "open.test"]["verdict"] == "open"
    assert results["chat", "tcp", "127.0.0.1"]["verdict"] == "open"
    assert results["chat", "tls", "127.0.0.1"]["verdict"] == "open"
    bogon = results["censored", "dns", "bogon.test"]
    assert (bogon["verdict"], bogon["blocking"]) == ("blocked", "dns.bogon")
    for key in (("censored", "dns", "gone.test"), ("censored", "tcp", "127.0.0.1")):
        record = results[key]
        assert record["verdict"] == "inconclusive" and record["blocking"] is None
        assert record["evidence"]["rule"] == "no_control"
    assert results["censored", "dns", "gone.test"]["evidence"]["suspected"] == "dns.nxdomain"
    assert results["censored", "tcp", "127.0.0.1"]["evidence"]["suspected"] == "tcp.reset"
    for record in records:
        assert record["network"]["link_type"] == "adsl"
        assert record["schema"] == "voipwatch.measurement/1"
    # the same records are in --output and in the spool, and all verify
    assert [json.loads(line) for line in output.read_text().splitlines()] == records
    with Spool(voipwatch_home / "spool.sqlite3") as spool:
        assert {r["id"] for r in spool.pending(100)} == {r["id"] for r in records}
    verify = await asyncio.create_subprocess_exec(*probe_command(), "verify", str(output),
                                                  stdout=asyncio.subprocess.PIPE)
    assert await verify.wait() == 0


async def test_control_unreachable_keeps_the_opens(lab: dict[str, Any]) -> None:
    """The control (the collector, by default) blocked or down: every endpoint
    that worked is still `open` (it proves the network works), the failures
    that need a control are `inconclusive`, and each record says the control
    was unreachable."""
    code, out, err = await probe_run(
        "--catalogue", str(lab["catalogue"]), "--no-upload", "--json", "--timeout", "1",
        "--resolver", f"127.0.0.1:{lab['dns'].port}",
        "--control", f"http://127.0.0.1:{closed_port()}", env=lab["env"])
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 6
    results = by_endpoint(records)
    for key in (("chat", "dns", "open.test"), ("chat", "tcp", "127.0.0.1"),
                ("chat", "tls", "127.0.0.1")):
        assert results[key]["verdict"] == "open"
    # a bogon proves itself once the network is known to work
    bogon = results["censored", "dns", "bogon.test"]
    assert (bogon["verdict"], bogon["blocking"]) == ("blocked", "dns.bogon")
    for key in (("censored", "dns", "gone.test"), ("censored", "tcp", "127.0.0.1")):
        assert results[key]["verdict"] == "inconclusive"
        assert results[key]["evidence"]["rule"] == "no_control"
    for record in records:
        connectivity = record["evidence"]["connectivity"]
        assert connectivity["ok"] and connectivity["proven_by"] == "endpoint"
        assert connectivity["unreachable"] == ["control"]
    assert "no connectivity" in err


async def test_table_and_service_selection(lab: dict[str, Any]) -> None:
    code, out, err = await probe_run(
        "--catalogue", str(lab["catalogue"]), "--no-upload", "--services", "chat",
        "--resolver", f"127.0.0.1:{lab['dns'].port}",
        "--control", f"http://127.0.0.1:{lab['control_port']}", env=lab["env"])
    assert code == 0, err
    assert "voipwatch results" in out and "call path vs messaging" in out
    assert "censored" not in out
    assert "3 open" in out
    assert "[3/3]" in err  # progress lines when stderr is not a terminal


async def test_budget_stops_measuring(lab: dict[str, Any]) -> None:
    code, out, err = await probe_run(
        "--catalogue", str(lab["catalogue"]), "--no-upload", "--json", "--budget-mb", "0.000001",
        "--concurrency", "1", "--resolver", f"127.0.0.1:{lab['dns'].port}",
        "--control", f"http://127.0.0.1:{lab['control_port']}", env=lab["env"])
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    skipped = [r for r in records if r["evidence"]["failure"] == "budget_exhausted"]
    assert skipped and all(r["verdict"] == "inconclusive" for r in skipped)


async def test_fail_on_and_output_spellings(lab: dict[str, Any], tmp_path: Path) -> None:
    """`--fail-on blocked` exits 5 once the pass is done and spooled; `--out` is
    `--output`; a file collects pass after pass; `--output -` is stdout."""
    common = ("--catalogue", str(lab["catalogue"]), "--no-upload", "--resolver",
              f"127.0.0.1:{lab['dns'].port}", "--control",
              f"http://127.0.0.1:{lab['control_port']}")
    output = tmp_path / "passes.jsonl"
    code, _, err = await probe_run(*common, "--out", str(output), "--fail-on", "blocked",
                                   env=lab["env"])
    assert code == 5, err
    assert "the pass completed and found 1 blocked (--fail-on)" in err  # dns.bogon
    assert "Traceback" not in err and "internal error" not in err
    assert len(output.read_text().splitlines()) == 6
    code, out, err = await probe_run(*common, "--output", "-", "--fail-on", "throttled",
                                     env=lab["env"])
    assert code == 0, err  # nothing throttled
    assert len([json.loads(line) for line in out.splitlines()]) == 6
    code, _, err = await probe_run(*common, "--output", str(output), env=lab["env"])
    assert code == 0 and len(output.read_text().splitlines()) == 12  # appended
    code, _, err = await probe_run(*common, "--fail-on", "blocked,open", env=lab["env"])
    assert code == 2 and "--fail-on 'blocked,open'" in err
