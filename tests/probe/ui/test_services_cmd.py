"""`voipwatch-probe services`: every service of the catalogue and its checks per
role, the same as the validated catalogue says; other catalogues validated;
no catalogue model (pydantic) loaded for the shipped one."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

from probe.catalogue import load_catalogue
from tests.conftest import BIN
from tests.probe.ui.test_cli import assert_user_error, run_cli


def test_lists_every_service_and_its_checks_per_role() -> None:
    result = run_cli("services")
    assert result.returncode == 0, result.stderr
    catalogue = load_catalogue()
    blocks: dict[str, list[str]] = {}
    current = ""
    for line in result.stdout.splitlines()[:-1]:
        if not line.startswith(" "):
            current = line.split()[0]
            blocks[current] = []
        else:
            blocks[current].append(line.strip())
    assert list(blocks) == [s.id for s in catalogue.services]
    for service in catalogue.services:
        for role in ("messaging", "call"):
            checks = Counter(e.check for e in service.endpoints if e.role == role)
            line = next((b for b in blocks[service.id] if b.split()[0] == role), None)
            if not checks:
                assert line is None
                continue
            assert line is not None, (service.id, role)
            shown = {}
            for part in line.split(None, 1)[1].split(", "):
                name, _, times = part.partition(" x")
                shown[name] = int(times or 1)
            assert shown == dict(checks), (service.id, role)
    total = sum(len(s.endpoints) for s in catalogue.services)
    assert result.stdout.splitlines()[-1].startswith(
        f"{len(catalogue.services)} services, {total} endpoints")


def test_one_line_per_endpoint() -> None:
    result = run_cli("services", "--services", "signal", "--endpoints")
    assert result.returncode == 0, result.stderr
    (signal,) = load_catalogue().select(["signal"]).services
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["signal", "Signal"]
    assert len(lines) == 1 + len(signal.endpoints) + 1
    assert [line.split()[1] for line in lines[1:-1]] == [e.check for e in signal.endpoints]


def test_another_catalogue_is_validated(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("version: 1\nservices:\n  - id: local\n    name: Local\n    endpoints:\n"
                    "      - {check: tcp, host: 127.0.0.1, port: 9, role: messaging}\n")
    result = run_cli("services", "--catalogue", str(good))
    assert result.returncode == 0 and "local" in result.stdout and "tcp" in result.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace("port: 9", "port: 99999"))
    assert_user_error(run_cli("services", "--catalogue", str(bad)), f"{bad}:6", "port")
    assert_user_error(run_cli("services", "--catalogue", str(tmp_path / "none.yaml")),
                      "catalogue not found")
    assert_user_error(run_cli("services", "--services", "whatsapp,nope"),
                      "unknown service 'nope'")


def test_answers_without_the_catalogue_models() -> None:
    """The quick path: no pydantic, rich or httpx import for the shipped catalogue."""
    code = ("import sys; from probe.ui.cli import main; main(['services']); "
            "heavy = [m for m in ('pydantic', 'rich', 'httpx') if m in sys.modules]; "
            "sys.exit(f'imported {heavy}' if heavy else 0)")
    result = subprocess.run([str(BIN / "python"), "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
