from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import BIN, ROOT


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built once, as a release builds it."""
    dist = tmp_path_factory.mktemp("dist")
    result = subprocess.run([str(BIN / "python"), "-m", "pip", "wheel", "--no-deps", "--quiet",
                             "--disable-pip-version-check", "-w", str(dist), str(ROOT)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = dist.glob("voipwatch-*.whl")
    return path
