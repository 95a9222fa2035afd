"""The collector's processes move start-up objects out of the garbage
collector's sight and collect young objects less often (collector/gc_tuning.py):
checked in a fresh process that starts the app."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from collector.gc_tuning import YOUNG_THRESHOLD

ROOT = Path(__file__).resolve().parents[2]


def test_app_start_up_tunes_the_collector(tmp_path: Path) -> None:
    script = (
        "import gc\n"
        "from fastapi.testclient import TestClient\n"
        "from collector.app import create_app\n"
        "from collector.settings import load_settings\n"
        f"settings = load_settings({{'data_dir': {str(tmp_path)!r}}})\n"
        "before = gc.get_freeze_count()\n"
        "with TestClient(create_app(settings)) as client:\n"
        "    assert client.get('/healthz').status_code == 200\n"
        "    print(before, gc.get_freeze_count(), gc.get_threshold()[0])\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    before, frozen, young = map(int, result.stdout.split())
    assert before == 0 and frozen > 10_000 and young == YOUNG_THRESHOLD
