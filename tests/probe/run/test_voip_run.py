"""`voipwatch-probe run` end to end with stun, turn and sip endpoints pointing
at a real coturn and a real Kamailio on loopback: every one must be `open`."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from tests.conftest import probe_command
from tests.support.pki import TestCA
from tests.support.tcp_servers import tcp_server
from tests.support.voip import (
    SERVER_NAME,
    TURN_PASSWORD,
    TURN_USER,
    coturn_server,
    kamailio_server,
    udp_echo,
)


def catalogue(turn: Any, sip: Any, peer: int, messaging_port: int) -> str:
    credentials = f"username: {TURN_USER}, password: {TURN_PASSWORD}, peer: '127.0.0.1:{peer}'"
    common = f"host: 127.0.0.1, role: call, sni: {SERVER_NAME}"
    lines = []
    for check, server in (("stun", turn), ("turn", turn), ("sip", sip)):
        for transport in ("udp", "tcp", "tls"):
            port = server.tls_port if transport == "tls" else server.port
            extra = f", {credentials}" if check == "turn" else ""
            lines.append(f"      - {{check: {check}, {common}, port: {port}, "
                         f"transport: {transport}{extra}}}")
    lines.append(f"      - {{check: turn, {common}, port: {turn.port}, transport: udp}}")
    return (
        "version: 1\nservices:\n  - id: lab-voip\n    name: Lab VoIP\n    endpoints:\n"
        + "\n".join(lines)
        + f"\n      - {{check: tcp, host: 127.0.0.1, port: {messaging_port}, role: messaging}}\n")


async def probe_run(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *probe_command(), "run", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_every_voip_endpoint_is_open(tmp_path: Path) -> None:
    ca = TestCA(tmp_path)
    with coturn_server(tmp_path, ca) as turn, kamailio_server(tmp_path, ca) as sip:
        # the control URL accepts TCP (the pre-check passes) and resets the HTTP
        # request: no control answer, so failures would be inconclusive, never blocked
        async with udp_echo() as peer, tcp_server(mode="reset_on_data") as control, \
                tcp_server() as messaging:
            path = tmp_path / "catalogue.yaml"
            path.write_text(catalogue(turn.coturn, sip.kamailio, peer, messaging))
            env = dict(os.environ, SSL_CERT_FILE=str(ca.path))
            output = tmp_path / "out.jsonl"
            args = ("--catalogue", str(path), "--no-upload", "--link-type", "wifi",
                    "--control", f"http://127.0.0.1:{control}")
            code, out, err = await probe_run(*args, "--json", "--output", str(output), env=env)
            assert code == 0, err
            table_code, table, table_err = await probe_run(*args, env=env)

    records = [json.loads(line) for line in out.splitlines()]
    voip = [r for r in records if r["endpoint"]["check"] in ("stun", "turn", "sip")]
    assert len(voip) == 10
    for record in voip:
        where = f"{record['endpoint']['check']}/{record['endpoint']['transport']}"
        assert record["evidence"]["status"] == "ok", (where, record["evidence"])
        assert record["verdict"] == "open", where
        assert record["evidence"]["control"]["state"] == "absent"
    relayed = [r for r in voip if "relay" in r["evidence"]]
    assert len(relayed) == 3  # TURN over UDP, TCP and TLS, each to the echo peer and back

    verify = await asyncio.create_subprocess_exec(
        *probe_command(), "verify", str(output), stdout=asyncio.subprocess.PIPE)
    assert await verify.wait() == 0

    assert table_code == 0, table_err
    assert "call path vs messaging" in table
    summary = table.split("call path vs messaging", 1)[1]
    row = next(line for line in summary.splitlines() if "lab-voip" in line)
    assert [cell.strip() for cell in row.split("│")[1:4]] == ["lab-voip", "open", "open"]
    assert table.count("relayed") == 3 and "401 challenge" in table
