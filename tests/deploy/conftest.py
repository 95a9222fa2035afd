from __future__ import annotations

import subprocess
from pathlib import Path
from typing import NoReturn

import pytest

from tests.conftest import BIN, ROOT, in_ci
from tests.support import container_image


def missing(message: str) -> NoReturn:
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


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


@pytest.fixture(scope="module")
def podman_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    try:
        return container_image.podman_env(tmp_path_factory.mktemp("containers"))
    except container_image.MissingTool as exc:
        missing(str(exc))
