from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    # unpacking: started now, it is ready, or nearly, when its tests come. Under
    # pytest-xdist the controller builds it (below), not each worker.
    from tests.support import container_image

    if hasattr(session.config, "workerinput") or session.config.option.collectonly:
        return
    if container_image.needed(item.nodeid for item in session.items):
        container_image.start()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    from tests.support import container_image

    node.workerinput[container_image.STATUS_KEY] = str(container_image.status_path())


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    from tests.support import container_image

    if container_image.needed(ids):
        container_image.start(status=container_image.status_path())


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """With pytest-xdist (`make test` runs two workers), a module runs on one
    worker, so its module-scoped servers start once; tests sharing the session's
    censorship lab, or its wheel, run on the same worker, so each is built once."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        shared = next((name for name in ("lab", "wheel") if name in fixtures), None)
        item.add_marker(pytest.mark.xdist_group(shared or item.nodeid.split("::")[0]))


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
