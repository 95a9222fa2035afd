"""The coturn and Kamailio launchers of deploy/services: a clear error with the
daemon's log when it dies at start, a clean stop, and (as root) the same
daemons inside a network namespace, checked from inside it."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.services import ServiceError
from deploy.services.coturn import Coturn
from deploy.services.kamailio import Kamailio
from tests.conftest import in_ci
from tests.support.voip import require


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_a_daemon_that_dies_at_start_is_reported_with_its_log(tmp_path: Path) -> None:
    require("kamailio")
    launcher = Kamailio(tmp_path, cert=tmp_path / "missing.pem", key=tmp_path / "missing.key")
    with pytest.raises(ServiceError) as raised, launcher:
        pass
    message = str(raised.value)
    assert "kamailio exited with status" in message and "kamailio.log" in message
    assert "missing" in message  # the log tail says what was wrong
    assert launcher.process is None


def test_stop_ends_the_whole_process_group(tmp_path: Path) -> None:
    require("kamailio")
    with Kamailio(tmp_path, children=2) as kamailio:
        pid = kamailio.pid
        assert pid is not None
        group = [int(p) for p in os.listdir("/proc") if p.isdigit() and _pgid(int(p)) == pid]
        assert len(group) > 1  # Kamailio forks its workers
    assert not any(_alive(p) for p in group)


def _pgid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[2])
    except (OSError, IndexError, ValueError):
        return None


def test_half_a_tls_configuration_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match="both cert and key"):
        Coturn(tmp_path, cert=tmp_path / "cert.pem")


CHECK_INSIDE = """
import asyncio, sys
from probe.catalogue import ENDPOINT_ADAPTER
from probe.checks import sip, stun
async def main():
    from probe.checks.base import Context
    for check, port in ((stun, 3478), (sip, 5060)):
        endpoint = ENDPOINT_ADAPTER.validate_python(
            {"check": check.NAME, "host": "127.0.0.1", "port": port, "role": "call"})
        print(check.NAME, (await check.run(endpoint, Context(timeout=2))).status)
asyncio.run(main())
"""


def test_daemons_run_inside_a_network_namespace(tmp_path: Path) -> None:
    require("turnserver")
    require("kamailio")
    if os.geteuid() != 0:
        if in_ci():
            pytest.fail("network namespaces need root, which CI has")
        pytest.skip("network namespaces need root")
    namespace = f"vwv-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        subprocess.run(["ip", "-n", namespace, "link", "set", "lo", "up"], check=True)
        # the standard ports: inside its own namespace nothing else holds them
        with Coturn(tmp_path / "coturn", netns=namespace) as turn, \
                Kamailio(tmp_path / "kamailio", netns=namespace) as sip:
            assert (turn.port, sip.port) == (3478, 5060)
            assert os.readlink(f"/proc/{turn.pid}/ns/net") != os.readlink("/proc/self/ns/net")
            result = subprocess.run(
                ["ip", "netns", "exec", namespace, sys.executable, "-c", CHECK_INSIDE],
                capture_output=True, text=True, timeout=30,
                cwd=Path(__file__).resolve().parents[2])
        assert result.stdout.split("\n")[:2] == ["stun ok", "sip ok"], result.stderr
    finally:
        subprocess.run(["ip", "netns", "delete", namespace], check=False)
