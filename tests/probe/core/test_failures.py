from __future__ import annotations

import errno
import ssl
from pathlib import Path

import pytest

from probe.core.failures import Failure, classify_error, describe, scrub

DOC = Path(__file__).resolve().parents[3] / "docs" / "failures.md"


def test_every_failure_is_documented() -> None:
    text = DOC.read_text()
    for failure in Failure:
        assert f"`{failure.value}`" in text, failure.value


@pytest.mark.parametrize("exc,failure", [
    (TimeoutError(), Failure.GENERIC_TIMEOUT),
    (ConnectionResetError(errno.ECONNRESET, "reset"), Failure.CONNECTION_RESET),
    (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), Failure.CONNECTION_REFUSED),
    (OSError(errno.EHOSTUNREACH, "no route"), Failure.HOST_UNREACHABLE),
    (OSError(errno.ENETUNREACH, "unreachable"), Failure.NETWORK_UNREACHABLE),
    (PermissionError(errno.EPERM, "not permitted"), Failure.PERMISSION_DENIED),
    (ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), Failure.EOF),
    (ssl.SSLError(1, "[SSL: TLSV1_ALERT_HANDSHAKE_FAILURE] alert"), Failure.SSL_FAILED_HANDSHAKE),
    (ValueError("weird"), Failure.UNKNOWN),
])
def test_errors_map_to_one_string(exc: BaseException, failure: Failure) -> None:
    assert classify_error(exc) is failure


def test_scrub_removes_addresses() -> None:
    text = "connect to 192.0.2.7:443 from 10.1.2.3 via 2001:db8::1 failed"
    assert scrub(text) == "connect to [scrubbed]:443 from [scrubbed] via [scrubbed] failed"
    assert "203.0.113.9" not in describe(OSError("bad peer 203.0.113.9"))


def test_scrub_keeps_times_of_day() -> None:
    assert scrub("at 12:30:45 it failed") == "at 12:30:45 it failed"
