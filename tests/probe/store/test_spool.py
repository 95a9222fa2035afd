from __future__ import annotations

import json
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


def test_pending_bodies_are_the_records_compact_utf8_json(tmp_path: Path) -> None:
    # what the uploader sends as is: byte for byte the record as spooled, not
    # escaped (an Arabic AS name stays UTF-8), in the same order as pending()
    records = [{**record(i), "network": {"as_org": "اتصالات المغرب", "cc": "MA"}}
               for i in range(3)]
    with Spool(tmp_path / "spool.sqlite3") as spool:
        for item in records:
            spool.add(item)
        spooled = spool.pending_bodies(2)
    assert [s.id for s in spooled] == [records[0]["id"], records[1]["id"]]
    for item, found in zip(records, spooled, strict=False):
        assert found.body == json.dumps(item, separators=(",", ":"),
                                        ensure_ascii=False).encode()
        assert json.loads(found.body) == item


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
