"""ADBC's SQLite reads run in a process of their own: the driver's copy of
SQLite beside Python's in one process dropped the process's locks (a
collector holding the write lock lost it to another process when an export's
read ended)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from collector import export_proof, export_sqlite, sqlite_reader
from collector.db.engine import write_options
from collector.export import export
from collector.identity import load_or_create
from collector.store import Filters, MeasurementStore
from collector.translog import TransLog
from probe.core.record import rfc3339
from probe.core.signing import ProbeKey
from tests.collector.conftest import make_record, revoked_store

RECORDS = 6


@pytest.fixture(scope="module")
def stocked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, Path]]:
    data = tmp_path_factory.mktemp("sqlite-reader")
    key = ProbeKey.generate()
    start = datetime(2016, 1, 7, tzinfo=UTC)
    records = [make_record(key, "whatsapp", started_at=rfc3339(start + timedelta(hours=i)))
               for i in range(RECORDS)]
    engine = revoked_store(data, None, key, ProbeKey.generate(), records,
                           ["--max-record-age-days", "0"])
    yield engine, data
    engine.dispose()


def _write_lock_taken_elsewhere(path: str) -> bool:
    """Whether another process gets SQLite's write lock at once."""
    attempt = ("import sqlite3, sys\n"
               "db = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)\n"
               "try:\n    db.execute('BEGIN IMMEDIATE')\nexcept sqlite3.OperationalError:\n"
               "    print('refused')\nelse:\n    print('taken')\n    db.execute('ROLLBACK')\n")
    answer = subprocess.run([sys.executable, "-c", attempt, path], capture_output=True,
                            text=True, timeout=60)
    assert answer.stdout.strip() in ("refused", "taken"), answer.stderr
    return answer.stdout.strip() == "taken"


def test_an_export_and_its_proof_keep_the_process_write_lock(
        stocked: tuple[Engine, Path]) -> None:
    """A collector process holding the write lock (an ingest's transaction)
    while an export and its proof are read in it keeps that lock: no other
    process can write meanwhile (with the driver's SQLite in the process,
    another process took it the moment the read ended)."""
    engine, data = stocked
    log = TransLog(engine, load_or_create(data))
    size = log.size()
    head = log.head_at(size)  # kept now: signing it is a write of its own
    path = str(engine.url.database)
    with engine.connect().execution_options(**write_options(engine, patient=True)) as conn, \
            conn.begin():
        conn.execute(sa.text("UPDATE probes SET revoked_at = revoked_at"))  # the write lock is held
        assert not _write_lock_taken_elsewhere(path)
        exported = b"".join(export(MeasurementStore(engine), Filters(), "jsonl"))
        proof = b"".join(export_proof.proof(log, log.key, Filters(), size, "jsonl", head))
        assert exported.count(b"\n") == RECORDS and proof.count(b"\n") == size + 1
        assert not _write_lock_taken_elsewhere(path)
    assert _write_lock_taken_elsewhere(path)  # and released with the transaction
    maps = Path(f"/proc/{os.getpid()}/maps").read_text()
    assert "adbc_driver_sqlite" not in maps  # the driver's SQLite never loaded here


def test_queries_come_in_order_each_closed_by_a_marker(stocked: tuple[Engine, Path]) -> None:
    engine, _ = stocked
    queries = [("SELECT seq FROM measurements WHERE seq <= ? ORDER BY seq", [n])
               for n in (2, 5, 0)]
    seen: dict[int, list[int]] = {0: [], 1: [], 2: []}
    ends = []
    for number, batch in export_sqlite.read(engine, queries, batch_rows=2):
        if batch is None:
            ends.append(number)
        else:
            seen[number] += batch.column("seq").to_pylist()
    first = min(seen[1])
    assert ends == [0, 1, 2] and seen[0] == [first, first + 1] and seen[2] == []
    assert seen[1] == list(range(first, first + 5))
    assert list(export_sqlite.read(engine, [])) == []


def test_the_readers_error_is_raised_with_sqlites_words(stocked: tuple[Engine, Path]) -> None:
    engine, _ = stocked
    with pytest.raises(sqlite_reader.ReadFailed, match="no such table: nowhere"):
        list(export_sqlite.read(engine, [("SELECT * FROM nowhere", [])]))
    missing = engine.url.set(database=str(Path(str(engine.url.database)).with_name("gone.db")))
    with pytest.raises(sqlite_reader.ReadFailed):
        list(export_sqlite.read(sa.create_engine(missing), [("SELECT 1", [])]))


def test_stopping_early_ends_the_reader_process(stocked: tuple[Engine, Path]) -> None:
    engine, _ = stocked
    children = Path(f"/proc/{os.getpid()}/task/{threading.get_native_id()}/children")
    before = children.read_text().split()
    reading = export_sqlite.read(engine, [("SELECT seq FROM measurements", [])] * 50,
                                 batch_rows=1)
    assert next(reading)[1] is not None
    assert len(children.read_text().split()) == len(before) + 1
    reading.close()  # a client gone mid-export
    assert children.read_text().split() == before


def _written_between_two_queries(tmp_path: Path, one_snapshot: bool) -> list[int]:
    """The count the second query reads when a row is committed after the
    first query's reading began (the first fills more than a pipe, so the
    reader process waits in its midst)."""
    import sqlite3

    tmp_path.mkdir()
    path = tmp_path / "two-queries.sqlite3"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t (x INTEGER)")
        db.execute("INSERT INTO t VALUES (1)")
    engine = sa.create_engine(f"sqlite:///{path}")
    many = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50000) "
            "SELECT i, printf('%0200d', i) AS pad FROM n, (SELECT count(*) FROM t)")
    queries = [(many, []), ("SELECT count(*) AS rows FROM t", [])]
    reading = export_sqlite.read(engine, queries, batch_rows=500, one_snapshot=one_snapshot)
    assert next(reading)[0] == 0
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("INSERT INTO t VALUES (2)")  # WAL: a writer beside the reader
    counts = [batch.column("rows")[0].as_py() for number, batch in reading
              if number == 1 and batch is not None]
    engine.dispose()
    return counts


def test_queries_in_one_snapshot_read_one_state_of_the_database(tmp_path: Path) -> None:
    assert _written_between_two_queries(tmp_path / "one", one_snapshot=True) == [1]
    # by default each query reads the state as it begins
    assert _written_between_two_queries(tmp_path / "each", one_snapshot=False) == [2]


def test_each_query_has_its_own_columns(stocked: tuple[Engine, Path]) -> None:
    engine, _ = stocked
    queries = [("SELECT seq FROM measurements", []), ("SELECT key_id, 7 AS n FROM probes", [])]
    names = {number: batch.schema.names for number, batch in export_sqlite.read(engine, queries)
             if batch is not None}
    assert names == {0: ["seq"], 1: ["key_id", "n"]}


def _numbers(tmp_path: Path, rows: int, step: int = 3, pad: int = 200) -> Engine:
    """A WAL database of `rows` rows, seq 3, 6, 9... (gaps, as deletions leave)."""
    import sqlite3

    path = tmp_path / "numbers.sqlite3"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, pad TEXT)")
        db.executemany("INSERT INTO t VALUES (?, ?)",
                       [(step * i, "x" * pad) for i in range(1, rows + 1)])
    return sa.create_engine(f"sqlite:///{path}")


def _ranged(width: int, budget: int) -> tuple[str, list[int], sqlite_reader.Ranged]:
    sql = export_sqlite.with_typed_row("SELECT seq, pad FROM t WHERE seq >= ? AND seq < ?",
                                       [("seq", "int"), ("pad", "text")], "seq")
    return sql, [0, 0], sqlite_reader.Ranged(0, 1, "SELECT max(seq) FROM t", width, budget)


@pytest.mark.parametrize(("width", "budget"), [(700, 10**9), (10**6, 20_000), (700, 20_000)])
def test_a_ranged_query_gives_every_row_once_in_order(tmp_path: Path, width: int,
                                                       budget: int) -> None:
    """Ranges of seq (and, past the byte budget, the rest of a range in a read
    of its own) give the rows of one query: each once, in order, after the
    one typed row."""
    engine = _numbers(tmp_path, 5000)
    seqs = [value for number, batch in export_sqlite.read(engine, [_ranged(width, budget)],
                                                          batch_rows=100)
            if batch is not None for value in batch.column("seq").to_pylist()]
    assert seqs == [-1] + [3 * i for i in range(1, 5001)]
    engine.dispose()


def test_a_ranged_query_of_no_rows_gives_its_typed_row(tmp_path: Path) -> None:
    engine = _numbers(tmp_path, 0)
    batches = [batch for _, batch in export_sqlite.read(engine, [_ranged(700, 20_000)])
               if batch is not None]
    assert [value for batch in batches for value in batch.column("seq").to_pylist()] == [-1]
    engine.dispose()


def _reset_while_reading(engine: Engine, query: Any) -> bool:
    """Whether the write-ahead log can be reset while the reader process waits
    to write (its pipe full: the rows are 10 MB) with a row written meanwhile."""
    import sqlite3

    path = engine.url.database
    assert path
    reading = export_sqlite.read(engine, [query], batch_rows=500)
    _, first = next(reading)
    time.sleep(0.5)  # the reader fills the pipe and waits
    with contextlib.closing(sqlite3.connect(path, isolation_level=None, timeout=0)) as db:
        db.execute("INSERT INTO t VALUES (10000000, 'later')")
        busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    rows = first.num_rows + sum(batch.num_rows for _, batch in reading if batch is not None)
    assert rows in (50_000, 50_001)  # every row of the start (and the typed row, if any)
    return not busy


def test_no_read_is_open_while_the_reader_waits_to_write(tmp_path: Path) -> None:
    """A ranged query's reads end before their rows are written, so a reader
    waiting on a slow consumer does not keep the write-ahead log from being
    reset; one long query does."""
    (tmp_path / "ranged").mkdir()
    engine = _numbers(tmp_path / "ranged", 50_000)
    assert _reset_while_reading(engine, _ranged(20_000, 256 * 1024))
    engine.dispose()
    (tmp_path / "whole").mkdir()
    engine = _numbers(tmp_path / "whole", 50_000)
    assert not _reset_while_reading(engine, ("SELECT seq, pad FROM t ORDER BY seq", []))
    engine.dispose()
