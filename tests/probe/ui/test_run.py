"""`voipwatch-probe run` end to end against real servers on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import subprocess
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


def closed_ports_catalogue(tmp_path: Path, count: int) -> Path:
    """`count` TCP checks of a closed loopback port: each a signed record at once."""
    port = closed_port()
    path = tmp_path / f"closed-{count}.yaml"
    path.write_text("version: 1\nservices:\n  - id: local\n    name: Local\n    endpoints:\n"
                    + "".join(f"      - {{check: tcp, host: 127.0.0.1, port: {port}, "
                              "role: call}\n" for _ in range(count)))
    return path


def cli_run(*args: str, limit: int | None = None,
            **popen: Any) -> subprocess.CompletedProcess[str]:
    def small_files() -> None:  # no file may grow beyond `limit` bytes: EFBIG, as ENOSPC
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run([*probe_command(), "run", *args], capture_output=True, text=True,
                          timeout=120, preexec_fn=small_files if limit else None, **popen)


def spooled_ids(home: Path) -> list[str]:
    with Spool(home / "spool.sqlite3") as spool:
        return [r["id"] for r in spool.pending(10_000)]


def test_output_to_a_device_is_a_clear_error(tmp_path: Path, voipwatch_home: Path) -> None:
    """A full device (/dev/full) or one that refuses writes (/proc/version) is said
    as a full disk is, once the records are in the spool; /dev/null is fine."""
    catalogue = str(closed_ports_catalogue(tmp_path, 2))
    result = cli_run("--catalogue", catalogue, "--no-upload", "--output", "/dev/full")
    assert result.returncode == 2, result.stderr
    assert result.stderr.endswith("error: cannot write --output /dev/full: No space left on "
                                  "device (the records are in the spool)\n"), result.stderr
    assert len(spooled_ids(voipwatch_home)) == 2
    result = cli_run("--catalogue", catalogue, "--no-upload", "--output", "/dev/null")
    assert result.returncode == 0, result.stderr
    assert len(spooled_ids(voipwatch_home)) == 4
    # writes refused (root), or the file itself (anyone else, before measuring)
    result = cli_run("--catalogue", catalogue, "--no-upload", "--output", "/proc/version")
    assert result.returncode == 2, result.stderr
    assert "error: cannot write --output /proc/version: " in result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr


@pytest.mark.parametrize("json_lines", [False, True])
def test_a_closed_stdout_does_not_stop_the_upload(tmp_path: Path, voipwatch_home: Path,
                                                  json_lines: bool) -> None:
    """`run | head -1`: the reader went away before the results were written; one
    line says so, the records are uploaded all the same, the status is the pass's."""
    from tests.collector.harness import Collector

    catalogue = str(closed_ports_catalogue(tmp_path, 3))
    with Collector(tmp_path / "collector") as collector:
        register = subprocess.run([*probe_command(), "register", "--collector", collector.url],
                                  capture_output=True, text=True, timeout=60)
        assert register.returncode == 0, register.stderr
        proc = subprocess.Popen(
            [*probe_command(), "run", "--catalogue", catalogue, "--timeout", "2",
             *(["--json"] if json_lines else [])],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        proc.stdout.close()  # before the pass ends: the first write meets a closed pipe
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "standard output was closed before the results were all written" in err
    assert "Traceback" not in err and "internal error" not in err
    assert "3 accepted" in err, err  # the upload's summary
    assert spooled_ids(voipwatch_home) == []


def test_a_spool_that_fills_up_mid_pass(tmp_path: Path, voipwatch_home: Path) -> None:
    """The spool's disk fills up in the middle of a pass (here: no file may grow
    beyond 150 kB, the kernel's EFBIG, which SQLite meets as it meets ENOSPC): the
    pass stops with one sentence, what it spooled stays, the records it signed
    but could not spool are saved beside the spool, verifiable, and the next
    pass spools them: nothing lost, nothing twice."""
    total = 40
    catalogue = str(closed_ports_catalogue(tmp_path, total))
    result = cli_run("--catalogue", catalogue, "--no-upload", "--json", limit=150_000)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert result.stdout == ""  # a stopped pass prints no records: they are not all spooled
    error = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(error) == 1, result.stderr
    found = re.search(r"error: cannot write the spool (\S+): (?:disk I/O error|database or disk "
                      rf"is full); the pass stopped: (\d+) of its {total} measurements are in "
                      r"the spool, (\d+) more in (\S+) \(the next run or upload spools "
                      r"them\)(?:, (\d+) were not made)?$", error[0])
    assert found, error[0]
    spool, kept, unsaved, saved, missing = found.groups(default="0")
    assert spool == str(voipwatch_home / "spool.sqlite3")
    assert Path(saved).parent == voipwatch_home
    assert int(kept) > 0 and int(unsaved) > 0 and int(kept) + int(unsaved) + int(missing) == total
    first = spooled_ids(voipwatch_home)
    assert len(first) == int(kept)
    verify = subprocess.run([*probe_command(), "verify", saved], capture_output=True,
                            text=True, timeout=60)
    assert verify.returncode == 0 and f"{unsaved} records, all signatures valid" in verify.stdout
    saved_ids = [json.loads(line)["id"] for line in Path(saved).read_text().splitlines()]
    # room again: the next pass spools the saved records first, then its own
    again = cli_run("--catalogue", catalogue, "--no-upload", "--json")
    assert again.returncode == 0, again.stderr
    assert f"{unsaved} records an earlier pass could not spool are in the spool now" \
        in again.stderr
    assert not Path(saved).exists()
    new_ids = [json.loads(line)["id"] for line in again.stdout.splitlines()]
    everything = spooled_ids(voipwatch_home)
    assert sorted(everything) == sorted(first + saved_ids + new_ids)
    assert len(set(everything)) == len(everything) == int(kept) + int(unsaved) + total
