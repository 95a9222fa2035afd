"""The lab's DNS daemon on loopback: the authoritative answers, the lying
views, and a scenario switch by SIGHUP without a restart."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import pytest

from deploy.lab.dns import loaded_marker, write_config
from tests.conftest import ROOT

ZONE = {"chat.lumen.lab": "192.88.99.10", "msg.parla.lab": "192.88.99.20",
        "sip.parla.lab": "192.88.99.21"}


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.2."""
    for _ in range(50):
        with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind(("127.0.0.2", 0))
            port = tcp.getsockname()[1]
            try:
                udp.bind(("127.0.0.2", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Path, int, int, subprocess.Popen[bytes]]]:
    auth, liar = free_port(), free_port()
    config = tmp_path / "dns.json"
    listen = [{"address": "127.0.0.2", "port": auth, "role": "authoritative"},
              {"address": "127.0.0.2", "port": liar, "role": "liar"}]
    write_config(config, ZONE, listen, {"127.0.0.0/8": {
        "chat.lumen.lab": "nxdomain", "msg.parla.lab": ["10.10.34.34"], "*.sip.parla.lab": "drop",
        "sip.parla.lab": "servfail"}})
    process = subprocess.Popen([sys.executable, "-m", "deploy.lab.dns", str(config)],
                               stdout=subprocess.PIPE, cwd=ROOT)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == b"ready"
        yield config, auth, liar, process
    finally:
        process.terminate()
        process.wait(5)


def ask(port: int, name: str, tcp: bool = False, timeout: float = 2) -> dns.message.Message:
    query = dns.message.make_query(name, "A")
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, "127.0.0.2", port=port, timeout=timeout)


def answers(message: dns.message.Message) -> list[str]:
    return [str(r) for rrset in message.answer for r in rrset]


def test_authoritative_answers(server: tuple[Path, int, int, subprocess.Popen[bytes]]) -> None:
    _, auth, _, _ = server
    assert answers(ask(auth, "chat.lumen.lab")) == ["192.88.99.10"]
    assert answers(ask(auth, "CHAT.lumen.lab.", tcp=True)) == ["192.88.99.10"]
    assert ask(auth, "nothing.lab").rcode() == dns.rcode.NXDOMAIN
    # not a recursive resolver: the lab has no internet
    assert ask(auth, "example.org").rcode() == dns.rcode.REFUSED


def test_the_liar_lies_only_about_its_names(
        server: tuple[Path, int, int, subprocess.Popen[bytes]]) -> None:
    _, _, liar, _ = server
    assert ask(liar, "chat.lumen.lab").rcode() == dns.rcode.NXDOMAIN
    assert answers(ask(liar, "msg.parla.lab", tcp=True)) == ["10.10.34.34"]
    assert ask(liar, "sip.parla.lab").rcode() == dns.rcode.SERVFAIL
    with pytest.raises(dns.exception.Timeout):
        ask(liar, "a.sip.parla.lab", timeout=0.5)  # `*.` covers subdomains, `drop` is silence
    assert answers(ask(liar, "relay.lumen.lab")) == []  # unknown to the zone: the truth,
    assert ask(liar, "relay.lumen.lab").rcode() == dns.rcode.NXDOMAIN  # which is NXDOMAIN


def test_sighup_switches_the_views(server: tuple[Path, int, int, subprocess.Popen[bytes]]) -> None:
    config, auth, liar, process = server
    listen = [{"address": "127.0.0.2", "port": auth, "role": "authoritative"},
              {"address": "127.0.0.2", "port": liar, "role": "liar"}]
    write_config(config, ZONE, listen, {}, generation=7)
    os.kill(process.pid, signal.SIGHUP)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            if int(loaded_marker(config).read_text()) == 7:
                break
        time.sleep(0.01)
    assert answers(ask(liar, "chat.lumen.lab")) == ["192.88.99.10"]
    assert process.poll() is None
