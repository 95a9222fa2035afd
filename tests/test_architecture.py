"""The layering of docs/architecture.md, enforced: the import-linter contracts
of pyproject.toml, what the collector may import from the probe, and mypy on
the probe (what `make lint` runs, so CI runs it too)."""

from __future__ import annotations

import subprocess

import grimp

from tests.conftest import BIN, ROOT

# The probe's interfaces the collector may import directly (docs/architecture.md).
COLLECTOR_MAY_IMPORT = ("probe.core", "probe.wire", "probe.catalogue", "probe.net.sockets",
                        "probe.run.helper")


def test_import_contracts_hold() -> None:
    result = subprocess.run([str(BIN / "lint-imports")], cwd=ROOT, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_collector_imports_only_the_probes_interfaces() -> None:
    graph = grimp.build_graph("probe", "collector")
    found = set()
    for module in graph.find_descendants("collector") | {"collector"}:
        for imported in graph.find_modules_directly_imported_by(module):
            if imported == "probe" or imported.startswith("probe."):
                found.add((module, imported))
    allowed = {(m, i) for m, i in found if i == "probe" or any(
        i == prefix or i.startswith(prefix + ".") for prefix in COLLECTOR_MAY_IMPORT)}
    assert found - allowed == set()
    assert any(i == "probe.run.helper" for _, i in found)  # the test helper's entry point


def test_the_probe_type_checks() -> None:
    result = subprocess.run([str(BIN / "mypy")], cwd=ROOT, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
