"""The tls check against real TLS servers on loopback, trusting a test CA."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from probe.catalogue import ENDPOINT_ADAPTER
from probe.checks import tls as tls_check
from probe.checks.base import Context, Status
from probe.core.failures import Failure
from probe.core.record import Blocking
from probe.verdict.methods import suspected
from tests.support.pki import TestCA
from tests.support.tcp_servers import closed_port, full_backlog, tcp_server


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path)


def endpoint(port: int, sni: str = "chat.test") -> Any:
    return ENDPOINT_ADAPTER.validate_python(
        {"check": "tls", "host": "127.0.0.1", "port": port, "sni": sni, "role": "messaging"})


def ctx(ca: TestCA, timeout: float = 2.0) -> Context:
    return Context(timeout=timeout, ssl_context=ca.client_context)


async def test_valid_certificate_is_ok(ca: TestCA) -> None:
    async with tcp_server(ssl_context=ca.issue("chat.test").server_context()) as port:
        obs = await tls_check.run(endpoint(port), ctx(ca))
    assert obs.status is Status.OK, obs
    assert obs.evidence["tls_version"] in ("TLSv1.2", "TLSv1.3")
    assert obs.evidence["certificate"]["subject_cn"] == "chat.test"
    assert obs.evidence["after_handshake"] == "quiet"


async def test_trust_comes_from_ssl_cert_file(ca: TestCA, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.path))
    async with tcp_server(ssl_context=ca.issue("chat.test").server_context()) as port:
        obs = await tls_check.run(endpoint(port), Context(timeout=2))
    assert obs.status is Status.OK


async def test_system_store_does_not_trust_the_test_ca(ca: TestCA,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    async with tcp_server(ssl_context=ca.issue("chat.test").server_context()) as port:
        obs = await tls_check.run(endpoint(port), Context(timeout=2))
    assert (obs.failure, suspected(obs)) == (Failure.SSL_UNKNOWN_AUTHORITY,
                                             Blocking.TLS_INVALID_CERT)
    assert obs.evidence["certificate"]["issuer_o"] == "voipwatch tests"


async def test_wrong_name_is_recorded_with_the_certificate(ca: TestCA) -> None:
    async with tcp_server(ssl_context=ca.issue("blockpage.test").server_context()) as port:
        obs = await tls_check.run(endpoint(port), ctx(ca))
    assert (obs.failure, suspected(obs)) == (Failure.SSL_INVALID_HOSTNAME,
                                             Blocking.TLS_INVALID_CERT)
    assert obs.evidence["certificate"]["subject_cn"] == "blockpage.test"
    assert obs.evidence["phase"] == "handshake"


async def test_expired_certificate(ca: TestCA) -> None:
    leaf = ca.issue("chat.test", expired=True)
    async with tcp_server(ssl_context=leaf.server_context()) as port:
        obs = await tls_check.run(endpoint(port), ctx(ca))
    assert (obs.failure, suspected(obs)) == (Failure.SSL_INVALID_CERTIFICATE,
                                           Blocking.TLS_INVALID_CERT)


async def test_silent_server_is_tls_timeout(ca: TestCA) -> None:
    async with tcp_server(mode="hang") as port:
        obs = await tls_check.run(endpoint(port), ctx(ca, timeout=1.0))
    assert (obs.failure, suspected(obs)) == (Failure.GENERIC_TIMEOUT, Blocking.TLS_TIMEOUT)
    assert obs.evidence["phase"] == "handshake"


async def test_reset_on_client_hello_is_tls_reset(ca: TestCA) -> None:
    async with tcp_server(mode="reset_on_data") as port:
        obs = await tls_check.run(endpoint(port), ctx(ca))
    assert (obs.failure, suspected(obs)) == (Failure.CONNECTION_RESET, Blocking.TLS_RESET)
    assert obs.evidence["phase"] == "handshake"


async def test_reset_after_handshake_is_told_apart(ca: TestCA) -> None:
    leaf = ca.issue("chat.test")
    async with tcp_server(mode="reset_after_tls", ssl_context=leaf.server_context()) as port:
        obs = await tls_check.run(endpoint(port), ctx(ca))
    assert (obs.failure, suspected(obs)) == (Failure.CONNECTION_RESET, Blocking.TLS_RESET)
    assert obs.evidence["phase"] == "after_handshake"
    assert obs.evidence["certificate"]["subject_cn"] == "chat.test"


async def test_connect_phase_failures(ca: TestCA) -> None:
    obs = await tls_check.run(endpoint(closed_port()), ctx(ca))
    assert (suspected(obs), obs.evidence["phase"]) == (Blocking.TCP_RESET, "connect")
    with full_backlog() as port:
        obs = await tls_check.run(endpoint(port), ctx(ca, timeout=1.0))
    assert (suspected(obs), obs.evidence["phase"]) == (Blocking.TCP_TIMEOUT, "connect")
