from __future__ import annotations

import json
import multiprocessing
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from probe.store.spool import UNSAVED, Spool, SpoolError


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


def full_spool(path: Path, room: int) -> Spool:
    """A spool that can grow by `room` pages only: SQLite's own "database or disk
    is full", as on a full disk."""
    spool = Spool(path)
    pages = spool.db.execute("PRAGMA page_count").fetchone()[0]
    spool.db.execute(f"PRAGMA max_page_count = {pages + room}")
    return spool


def test_a_full_spool_says_so_and_keeps_what_it_held(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite3"
    with full_spool(path, 6) as spool:
        spool.check_writable()
        added = 0
        with pytest.raises(SpoolError) as caught:
            for i in range(1000):
                spool.add({**record(i), "pad": "x" * 1500})
                added += 1
        assert str(caught.value) == f"cannot write the spool {path}: database or disk is full"
        assert caught.value.exit_status == 2  # a UserError: one sentence, no traceback
        assert 0 < added < 1000
        with pytest.raises(SpoolError, match="database or disk is full"):
            spool.check_writable()  # the next pass is refused before it measures
    with Spool(path) as spool:
        assert spool.counts()["pending"] == added


def test_check_writable_wants_room_for_the_pass(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from probe.store import spool as module

    path = tmp_path / "spool.sqlite3"
    with Spool(path) as spool:
        spool.check_writable(100)  # this disk has the room (a few MB)
        usage = shutil.disk_usage(tmp_path)
        monkeypatch.setattr(module.shutil, "disk_usage",
                            lambda _: usage._replace(free=500_000))
        with pytest.raises(SpoolError, match=r"only 500 kB free on its disk, a pass of 100 "
                                             r"checks needs about 3\.7 MB"):
            spool.check_writable(100)
        spool.check_writable(10)  # 0.37 MB
        assert spool.counts() == {"pending": 0, "rejected": 0}  # the test row went back


@pytest.mark.parametrize("write", [
    lambda s: s.add(record(9)), lambda s: s.check_writable(), lambda s: s.release(),
    lambda s: s.defer(record(1)["id"], "too_old", 60), lambda s: s.reject(record(1)["id"], "x"),
    lambda s: s.count_attempt([record(1)["id"]]), lambda s: s.remove([record(1)["id"]]),
    lambda s: s.settle("http://c", [(record(1)["id"], {"record_sha256": "0"}, {})]),
    lambda s: s.audited([record(1)["id"]], 5),
])
def test_a_read_only_spool_is_a_clear_error(tmp_path: Path, write: Any) -> None:
    """A spool file the probe may not write (another user's): every write is one
    sentence naming it, never a traceback; what it holds stays."""
    path = tmp_path / "spool.sqlite3"
    with Spool(path) as spool:
        spool.add(record(1))
        spool.db.execute("PRAGMA query_only = 1")  # as a read-only file (tests run as root)
        with pytest.raises(SpoolError, match=f"cannot write the spool {path}: attempt to "
                                             "write a readonly database"):
            write(spool)
        assert [r["id"] for r in spool.pending(10)] == [record(1)["id"]]


def test_a_damaged_spool_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite3"
    with Spool(path) as spool:
        for i in range(50):
            spool.add({**record(i), "pad": "x" * 1500})
        root = spool.db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'records'"
                                ).fetchone()[0]
    with path.open("r+b") as file:
        file.seek((root - 1) * 4096)
        file.write(b"\xab" * 4096)
    with Spool(path) as spool:
        for call, doing in ((spool.check_writable, "write"), (lambda: spool.add(record(99)),
                                                              "write"),
                            (lambda: spool.pending(10), "read")):
            with pytest.raises(SpoolError, match=f"cannot {doing} the spool .*: database disk "
                                                 "image is malformed .*recover"):
                call()


def test_unsaved_records_are_taken_back_once(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite3"
    with Spool(path) as spool:
        spool.add(record(1))
        spool.settle("http://c", [(record(2)["id"], {"record_sha256": "0"}, {})])  # uploaded
        saved = spool.save_unsaved([record(i) for i in (1, 2, 3, 4)])
        assert saved is not None and saved.parent == tmp_path and saved.match(UNSAVED)
        assert (saved.stat().st_mode & 0o777) == 0o600
        bad = tmp_path / "unsaved-bad.jsonl"
        bad.write_text('{"id": "x"}\n{not json\n')
        assert spool.take_back() == 2  # 1 was spooled, 2 has its receipt: 3 and 4
        assert not saved.exists() and bad.exists()  # a file that is not records stays
        assert sorted(r["n"] for r in spool.pending(10)) == [1, 3, 4]
        assert spool.take_back() == 0
