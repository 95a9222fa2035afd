from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from probe.core.signing import ProbeKey

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# Collectors the tests start register far more keys from 127.0.0.1 than a
# volunteer's address ever would (default 30 an hour); the tests of that limit
# set it themselves.
os.environ.setdefault("VOIPWATCH_COLLECTOR_REGISTER_RATE_PER_HOUR", "100000")
# ... and their throttle checks ask the reflector for free ephemeral ports, which the
# default allow-list (settings.DEFAULT_REFLECTOR_PORTS) does not name
os.environ.setdefault("VOIPWATCH_COLLECTOR_REFLECTOR_PORTS", "1024-65535")


def pytest_collection_finish(session: pytest.Session) -> None:
    # the collector's container image takes minutes to build, mostly downloads and
    # unpacking: started now, it is ready, or nearly, when its tests come
    from tests.support import container_image

    if not session.config.option.collectonly and any(
            item.nodeid.startswith(container_image.TEST_MODULE)
            and "image" in getattr(item, "fixturenames", ()) for item in session.items):
        container_image.start()


def pytest_sessionfinish(session: pytest.Session) -> None:
    from tests.support import container_image

    container_image.stop()


@pytest.fixture(autouse=True)
def voipwatch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own probe state directory."""
    home = tmp_path / "home"
    monkeypatch.setenv("VOIPWATCH_HOME", str(home))
    return home


@pytest.fixture
def probe_key() -> ProbeKey:
    from probe.core.signing import ProbeKey

    return ProbeKey.generate()


def probe_command() -> list[str]:
    return [str(BIN / "voipwatch-probe")]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")
