"""The censorship lab's fixtures: one lab per test session, built once, with a
prefix of its own (other sessions, other engineers' labs, may run beside it),
torn down at the end even when a test fails; labs of crashed sessions are
reaped first."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import in_ci


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.lab)


def require_root() -> None:
    if os.geteuid() != 0:
        if in_ci():
            pytest.fail("the lab tests need root in CI (network namespaces, nftables)")
        pytest.skip("needs root: network namespaces and nftables")


def session_prefix(tag: str = "") -> str:
    return f"vwlab{tag}{os.getpid() % 100000}"


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """The session's lab: three probe hosts, the router, the internet with every
    reference service and the collector; each probe registered."""
    require_root()
    from deploy.lab.lab import Lab
    from deploy.lab.topology import reap_stale

    reap_stale()
    lab = Lab(session_prefix(), tmp_path_factory.mktemp("lab"))
    lab.up(owner_pid=os.getpid())
    try:
        yield lab
    finally:
        lab.down()
