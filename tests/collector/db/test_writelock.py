"""Writers' turns on SQLite (collector/db/writelock.py): threads and processes
wait for the turn and get it the moment it is released; the WAL checkpoint
that restarts the file takes its turn too; PostgreSQL needs none."""

from __future__ import annotations

import contextlib
import gc
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from collector.db import checkpoint
from collector.db.checkpoint import Checkpointer
from collector.db.engine import make_engine
from collector.db.writelock import WriterTurns

HOLD = 0.4


def _turns(tmp_path: Path) -> WriterTurns:
    return WriterTurns(make_engine(f"sqlite:///{tmp_path}/c.sqlite3"))


def test_threads_take_turns(tmp_path: Path) -> None:
    turns = _turns(tmp_path)
    held, got = threading.Event(), []

    def second() -> None:
        held.wait()
        with turns.turn():
            got.append(time.monotonic())

    thread = threading.Thread(target=second)
    thread.start()
    with turns.turn():
        held.set()
        time.sleep(HOLD)
        released = time.monotonic()
    thread.join(5)
    assert got and got[0] >= released
    assert got[0] - released < 0.1  # handed over at once, not after a busy sleep


def test_processes_take_turns(tmp_path: Path) -> None:
    turns = _turns(tmp_path)
    assert turns.path is not None
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({turns.path!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('held', flush=True)\n"
        f"time.sleep({HOLD})\n")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    start = time.monotonic()
    with turns.turn():
        waited = time.monotonic() - start
    holder.wait(5)
    assert waited >= HOLD / 2


def _frames(engine: sa.Engine) -> int:
    """Frames in the WAL since it last restarted."""
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()[1])


def test_restarting_checkpoint_waits_for_its_turn(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from collector.db import engine as engine_module

    limit = 64 * 1024
    monkeypatch.setattr(engine_module, "WAL_LIMIT_BYTES", limit)
    monkeypatch.setattr(checkpoint, "WAL_LIMIT_BYTES", limit)
    engine = make_engine(f"sqlite:///{tmp_path}/c.sqlite3", serving=True)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x BLOB)")
        conn.execute(sa.text("INSERT INTO t VALUES (:x)"), [{"x": b"v" * 4096}] * 64)
    wal = Path(f"{tmp_path}/c.sqlite3-wal")
    grown = wal.stat().st_size
    assert grown > limit and _frames(engine) > 64
    turns, done = WriterTurns(engine), threading.Event()
    worker = Checkpointer(engine)
    with turns.turn():
        thread = threading.Thread(target=lambda: (worker.checkpoint(), done.set()))
        thread.start()
        assert not done.wait(HOLD)  # past the limit, the checkpoint waits for the writer's turn
    assert done.wait(5)
    thread.join(5)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO t VALUES (:x)"), [{"x": b"w" * 4096}] * 4)
    # the next commit wrote from the WAL's beginning, into a file cut to the limit
    # but not emptied: commits overwrite it rather than grow it
    assert _frames(engine) < 16
    assert wal.stat().st_size == limit
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar_one() == 68
    engine.dispose()


def test_no_restarting_checkpoint_while_a_long_writer_holds_the_database(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the database marked busy (collector/db/busy.py), a checkpoint past the
    limit does not queue for the writers' turn (four processes' did, a second
    each, and uploads waited behind them for a whole rebuild): PASSIVE, at once."""
    from collector.db.busy import BusyMark

    monkeypatch.setattr(checkpoint, "WAL_LIMIT_BYTES", 0)  # every WAL is past it
    engine = make_engine(f"sqlite:///{tmp_path}/c.sqlite3", serving=True)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x BLOB)")
        conn.execute(sa.text("INSERT INTO t VALUES (:x)"), [{"x": b"v" * 4096}] * 8)
    mark, worker = BusyMark(f"{tmp_path}/c.sqlite3"), Checkpointer(engine)
    mark.set()
    done = threading.Event()
    with WriterTurns(engine).turn():
        thread = threading.Thread(target=lambda: (worker.checkpoint(), done.set()))
        thread.start()
        assert done.wait(HOLD)  # did not wait for the turn held here
    thread.join(5)
    mark.clear()
    done.clear()
    with WriterTurns(engine).turn():
        thread = threading.Thread(target=lambda: (worker.checkpoint(), done.set()))
        thread.start()
        assert not done.wait(HOLD)  # unmarked: the RESTART takes its turn again
    assert done.wait(5)
    thread.join(5)
    engine.dispose()


def test_a_restart_kept_from_finishing_by_a_reader_is_not_retried_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader on an old snapshot (a long export) keeps a RESTART from finishing:
    it gives up after RESTART_WAIT_MS, holding the writers' turn that long, and
    the next ones wait longer and longer before trying again (four processes,
    each once a second, had held the turn all the time)."""
    monkeypatch.setattr(checkpoint, "WAL_LIMIT_BYTES", 0)
    engine = make_engine(f"sqlite:///{tmp_path}/c.sqlite3", serving=True)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x BLOB)")
        conn.execute(sa.text("INSERT INTO t VALUES (:x)"), [{"x": b"v" * 4096}] * 8)
    worker = Checkpointer(engine)
    with engine.connect() as reader:
        reader.exec_driver_sql("SELECT count(*) FROM t").one()  # a snapshot, held open
        start = time.monotonic()
        worker.checkpoint()
        tried = time.monotonic() - start
        start = time.monotonic()
        worker.checkpoint()
        again = time.monotonic() - start
    assert tried >= checkpoint.RESTART_WAIT_MS / 1000 * 0.9 and again < 0.2
    worker.checkpoint()  # the reader gone, and the pause not over yet: still waits
    monkeypatch.setattr(worker, "_restart_after", 0.0)
    worker.checkpoint()  # its turn again: it finishes, and the pause starts over
    assert worker._backoff == 1.0 and worker._restart_after <= time.monotonic()
    engine.dispose()


def test_postgresql_and_memory_have_no_turns() -> None:
    for url in ("sqlite://", "postgresql+psycopg://u@localhost/db"):
        turns = WriterTurns(sa.create_engine(url))
        assert turns.path is None
        with turns.turn():
            pass


def test_a_threads_descriptor_is_closed_with_the_thread(tmp_path: Path) -> None:
    turns = _turns(tmp_path)
    assert turns.path is not None
    opened: list[int] = []

    def use() -> None:
        with turns.turn():
            opened.append(turns._local.descriptor.fd)

    thread = threading.Thread(target=use)
    thread.start()
    thread.join(5)

    gc.collect()
    lock_file = os.stat(turns.path).st_ino
    # closed once the thread that held it ended (the number may be reused since)
    with contextlib.suppress(OSError):
        assert os.fstat(opened[0]).st_ino != lock_file
