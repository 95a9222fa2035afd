"""Requests generated from the collector's OpenAPI (schemathesis), a few
hundred here (`bench/openapi.py` sends >= 10,000): no server error, no partial
write. In a network namespace of the test's own, so whatever a generated
request names, nothing leaves the machine."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import in_ci
from tests.support.openapi_fuzz import in_namespace

REQUESTS = int(os.environ.get("VOIPWATCH_OPENAPI_REQUESTS", "300"))


def test_generated_requests_give_no_5xx_and_no_partial_write(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        if in_ci():
            pytest.fail("needs root and unshare(1) for a network namespace")
        pytest.skip("needs root and unshare(1) for a network namespace")
    result = in_namespace(tmp_path, REQUESTS, timeout=600)
    assert result["requests"] >= REQUESTS * 0.9, result
    assert result["server_errors"] == 0, result["errors"]
    assert result["partial_writes"] == 0 and result["log_tracebacks"] == 0, result
