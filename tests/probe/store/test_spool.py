from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path
from typing import Any

from probe.store.spool import Spool


def record(i: int) -> dict[str, object]:
    return {"id": f"00000000-0000-4000-8000-{i:012d}", "n": i}


def test_add_pending_remove_reject(tmp_path: Path) -> None:
    with Spool(tmp_path / "spool.sqlite3") as spool:
        for i in range(5):
            spool.add(record(i))
        spool.add(record(0))  # same id again: kept once
        assert [r["n"] for r in spool.pending(10)] == [0, 1, 2, 3, 4]
        spool.remove([record(0)["id"], record(1)["id"]])
        spool.reject(str(record(2)["id"]), "bad_signature")
        assert spool.counts() == {"pending": 2, "rejected": 1}
        assert spool.rejected() == [(record(2)["id"], "bad_signature")]
        assert [r["n"] for r in spool.pending(10)] == [3, 4]


def _writer(path: str, ready: Any) -> None:  # a multiprocessing Event
    spool = Spool(Path(path))
    for i in range(200):
        spool.add(record(i))
        if i == 99:
            ready.set()
    ready.set()
    os.kill(os.getpid(), signal.SIGSTOP)  # stopped, then killed below: no clean exit


def test_records_survive_a_killed_writer(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite3"
    ready = multiprocessing.get_context("fork").Event()
    proc = multiprocessing.get_context("fork").Process(target=_writer, args=(str(path), ready))
    proc.start()
    assert ready.wait(30)
    proc.kill()
    proc.join()
    with Spool(path) as spool:
        pending = spool.pending(1000)
    assert len(pending) >= 100
    assert len({r["id"] for r in pending}) == len(pending)
