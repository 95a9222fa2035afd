"""The catalogues: every string of the dashboard and of the probe's terminal
translated into French and Arabic, the probe's compiled catalogues up to date
with their sources, the language negotiation, the probe's table in French."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from collector.dashboard.i18n import CATALOGUES, negotiate
from tests.conftest import ROOT

PROBE_LOCALE = ROOT / "probe" / "ui" / "locale"


def _ids(path: Path) -> dict[object, object]:
    with path.open("rb") as handle:
        return {m.id: m.string for m in read_po(handle) if m.id}


def _extracted(directory: Path, method: str, pattern: str, keywords: dict[str, object]
               ) -> set[object]:
    found = set()
    for _, _, message, _, _ in extract_from_dir(
            directory, method_map=[(pattern, method)], keywords=keywords):
        found.add(message)
    return found


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_dashboard_catalogue_is_complete(lang: str) -> None:
    """Every string of the templates and pages is in the .po with a translation."""
    from babel.messages.extract import DEFAULT_KEYWORDS

    keywords = {**DEFAULT_KEYWORDS, "t": None}
    wanted = _extracted(ROOT / "collector", "jinja2", "dashboard/templates/**.*", keywords) | \
        _extracted(ROOT / "collector", "python", "**.py", keywords)
    catalogue = _ids(CATALOGUES / lang / "LC_MESSAGES" / "messages.po")
    missing = {m for m in wanted if m not in catalogue}
    assert not missing, f"run `make i18n` and translate: {sorted(map(str, missing))[:10]}"
    untranslated = [m for m, s in catalogue.items() if not s or (isinstance(s, tuple)
                                                                  and not all(s))]
    assert not untranslated


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_probe_catalogue_is_complete_and_compiled(lang: str) -> None:
    source = PROBE_LOCALE / lang / "LC_MESSAGES" / "voipwatch-probe.po"
    with (source.with_suffix(".mo")).open("rb") as handle:
        compiled = {m.id: m.string for m in read_mo(handle) if m.id}
    assert compiled == _ids(source), "run `make i18n` (pybabel compile)"
    wanted = _extracted(ROOT / "probe" / "ui", "python", "**.py", {"_": None, "N_": None})
    assert wanted <= set(compiled) and all(compiled.values())


def test_negotiation() -> None:
    assert negotiate(None, "fr-MA,fr;q=0.9,ar;q=0.8") == "fr"
    assert negotiate(None, "de;q=1, ar;q=0.5, fr;q=0.4") == "ar"
    assert negotiate("ar", "fr") == "ar"  # the switch wins
    assert negotiate("xx", None) == "en" and negotiate(None, "q=;;,") == "en"


def test_the_probes_table_in_french() -> None:
    code = ("from rich.console import Console; from probe.ui.report import render; "
            "r={'service':'whatsapp','endpoint':{'check':'stun','host':'h','port':3478,"
            "'transport':'udp','role':'call'},'verdict':'blocked','blocking':'udp.timeout',"
            "'runtime_ms':5,'evidence':{},'network':{'link_type':'cellular'}}; "
            "render([r], Console(width=120))")
    env = {**os.environ, "LANGUAGE": "fr", "LANG": "fr_FR.UTF-8"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=ROOT, check=True).stdout
    assert "résultats voipwatch" in out and "bloqué" in out and "appels" in out
    english = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**os.environ, "LANGUAGE": "en", "LANG": "C.UTF-8"},
                             cwd=ROOT, check=True).stdout
    assert "voipwatch results" in english and "blocked" in english
