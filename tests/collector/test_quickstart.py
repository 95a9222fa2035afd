"""`make run` (collector/quickstart.py) with a catalogue of loopback servers:
an embedded collector is started, then reused; the key is registered, a pass
runs, is uploaded, and the results page is named."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx

from tests.support.tcp_servers import closed_port, tcp_server


async def quickstart(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "collector.quickstart", *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={k: v for k, v in os.environ.items()
                                             if k != "VOIPWATCH_HOME"})
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_make_run_with_a_lab_catalogue(tmp_path: Path) -> None:
    var = tmp_path / "var"
    port = str(closed_port())
    async with tcp_server() as tcp_port:
        catalogue = tmp_path / "lab.yaml"
        catalogue.write_text(f"""\
version: 1
services:
  - id: labchat
    name: Lab chat
    endpoints:
      - {{check: tcp, host: 127.0.0.1, port: {tcp_port}, role: messaging}}
      - {{check: tcp, host: 127.0.0.1, port: {closed_port()}, role: call}}
""")
        try:
            code, out, err = await quickstart("--catalogue", str(catalogue), "--var", str(var),
                                              "--port", port)
            assert code == 0, err
            assert "started a collector at" in err
            assert "2 accepted, 0 duplicate, 0 rejected" in err
            assert "labchat" in out and f"Results page: http://127.0.0.1:{port}/" in out
            page = httpx.get(f"http://127.0.0.1:{port}/").text
            assert '<th scope="row">labchat <span class="path">' in page  # the matrix
            # the loopback endpoint was checked by the embedded collector's test helper
            code, out, err = await quickstart("--catalogue", str(catalogue), "--var",
                                              str(var), "--port", port)
            assert code == 0, err
            assert "reusing the collector already running" in err
            assert (var / "probe" / "probe.key").exists()
        finally:
            pid_file = var / "collector.pid"
            if pid_file.exists():
                os.kill(int(pid_file.read_text()), signal.SIGTERM)


async def test_port_taken_by_something_else(tmp_path: Path) -> None:
    async with tcp_server() as busy:
        code, _, err = await quickstart("--var", str(tmp_path / "var"), "--port", str(busy))
    assert code == 2
    assert "is taken by something that is not a voipwatch collector" in err


async def test_missing_catalogue(tmp_path: Path) -> None:
    code, _, err = await quickstart("--catalogue", str(tmp_path / "nope.yaml"))
    assert code == 2 and "catalogue not found" in err
