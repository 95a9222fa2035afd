"""SQLite reads through ADBC, in a process of their own.

ADBC's SQLite driver carries its own copy of SQLite, linked into it; the
collector's other connections use Python's. SQLite's locks are POSIX advisory
locks, which belong to a process: when one copy closes a descriptor of the
file, the kernel drops every lock the process holds on it, the other copy's
too (sqlite.org/howtocorrupt.html, 2.2.1). Measured here with both in one
process: a process holding the write lock lost it to another process the
moment an export's read ended, and a copy removing the write-ahead log under
the other's reader killed the process (SIGBUS). In a process of its own the
driver's copy is the only one there, and the kernel keeps each process's
locks apart, as SQLite expects. Starting it costs about 0.2 s, beside
exports of seconds to minutes.

The child reads one request, JSON on stdin (the file, the queries with their
positional parameters, the driver's rows per batch, whether they share one
read transaction), runs the queries in order on one read-only connection and
writes frames on stdout, each an 8-byte little-endian length and that many
bytes: for each query its schema (Arrow IPC), each batch of its rows (Arrow
IPC, in that schema) and a frame of length 0; -1 after the last. The parent
reads each batch straight into Arrow memory of its own (an Arrow IPC stream
read through a Python file object took 15-20 % longer: `bench/export.py`).
An error is one line on stderr, exit status 1.

No read transaction is open while the child waits to write: a reader that
holds one keeps SQLite's write-ahead log from being reset (every upload
meanwhile grows it), and the parent may wait on a slow client. So each query
is read before its rows are written (`hold`: queries of bounded size, the
proof's ranges), or in ranges (`Ranged`: the records, whatever their number):
`seq` from 0 up to the largest at the start, at most `width` values and about
`budget` bytes of rows at a time, each range in a read transaction of its
own, ended before its rows are written. Only the first range's first row is
the query's typed row (export_sqlite.with_typed_row); the child drops the
others'.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa  # imported with this module, by an export: not at the API's start

F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
PIPE_BYTES = 1024 * 1024  # Linux's pipe-max-size for an unprivileged process


class ReadFailed(RuntimeError):
    """The reader process failed: its message."""


@dataclass(frozen=True)
class Ranged:
    """A query read in ranges of `seq`: its parameters number `start` and
    `stop` are the range's bounds (`seq >= ? AND seq < ?`), its first column is
    `seq`, and `bound` gives the largest `seq` to read (NULL: none)."""

    start: int
    stop: int
    bound: str
    width: int = 20_000
    budget: int = 16 * 1024 * 1024


def batches(path: str, queries: list[tuple[str, list[Any]] | tuple[str, list[Any], Ranged]],
            busy_timeout_ms: int, batch_rows: int | None = None,
            one_snapshot: bool = False, hold: bool = False) -> Iterator[tuple[int, Any]]:
    """(query number, batch) for each batch the queries give, in order, and
    (query number, None) when a query is done. `busy_timeout_ms`: how long a
    read waits out a lock (opening the file while another connection sets up
    its write-ahead log, say). `one_snapshot`: the queries up to the first
    ranged one, and its first range, read one state of the database, in one
    read transaction (else each its own, so that a long series of reads does
    not keep the write-ahead log from being reset). `hold`: each query is read
    whole before it is written (queries of bounded size). Stopping early ends
    the child."""
    if not queries:
        return
    request = json.dumps({"path": path, "queries": [
        [query[0], query[1], asdict(query[2]) if len(query) > 2 else None]  # type: ignore[misc]
        for query in queries], "batch_rows": batch_rows,
        "busy_timeout_ms": int(busy_timeout_ms), "one_snapshot": one_snapshot, "hold": hold})
    env = _this_module_first()
    child = subprocess.Popen([sys.executable, "-m", "collector.sqlite_reader"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env)
    assert child.stdin is not None and child.stdout is not None and child.stderr is not None
    with contextlib.suppress(OSError):  # Linux: a batch in one pipe's fill, not 10
        fcntl.fcntl(child.stdout.fileno(), F_SETPIPE_SZ, PIPE_BYTES)
    try:
        try:
            child.stdin.write(request.encode())
            child.stdin.close()
        except BrokenPipeError as exc:  # it could not start: it says why
            child.wait()
            raise ReadFailed(_said(child) or "the SQLite reader did not start") from exc
        frames = _Frames(child.stdout)
        done = 0
        while (frame := frames.next()) is not None:  # a query's schema
            schema = pa.ipc.read_schema(frame)
            while (frame := frames.next()) is not None and frame.size:
                yield done, pa.ipc.read_record_batch(frame, schema)
            if frame is None:  # the last frame came in the midst of a query
                raise _CutShort
            yield done, None
            done += 1
        if child.wait() != 0 or done != len(queries):
            raise ReadFailed(_said(child) or f"the SQLite reader ended after {done} of "
                             f"{len(queries)} queries")
    except _CutShort as exc:
        child.wait()
        raise ReadFailed(_said(child) or "the SQLite reader stopped") from exc
    finally:
        if child.poll() is None:  # the caller stopped early
            child.kill()
            child.wait()
        for stream in (child.stdout, child.stderr):
            stream.close()


class _CutShort(Exception):
    pass


class _Frames:
    def __init__(self, source: Any) -> None:
        self.source = source

    def next(self) -> Any:
        """The next frame as an Arrow buffer, None after the last."""
        size = int.from_bytes(self._exact(bytearray(8)), "little", signed=True)
        return None if size < 0 else self._exact(pa.allocate_buffer(size))

    def _exact(self, target: Any) -> Any:
        view, got = memoryview(target), 0
        while got < len(view):
            read = self.source.readinto(view[got:])
            if not read:
                raise _CutShort
            got += read
        return target


_LAST = (-1).to_bytes(8, "little", signed=True)


def _frame(out: Any, data: Any) -> None:
    out.write(len(data).to_bytes(8, "little", signed=True))
    out.write(data)


def _this_module_first() -> dict[str, str]:
    """The child's environment: it imports this very module, wherever the
    caller found it (a checkout put on sys.path). An installed one is found
    anyway, and its site-packages is not put before the standard library."""
    import site

    root = Path(__file__).resolve().parent.parent
    installed = {Path(p).resolve() for p in [*site.getsitepackages(),
                                              site.getusersitepackages()]}
    if root in installed:
        return dict(os.environ)
    path_now = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(root) + (os.pathsep + path_now if path_now else "")}


def _said(child: subprocess.Popen[bytes]) -> str:
    assert child.stderr is not None
    return child.stderr.read().decode(errors="replace").strip()


def _serve(request: dict[str, Any]) -> None:
    # ADBC's own handles, not its DB-API module, which imports pyarrow.dataset
    # and compute: 27 MB more in every reader process
    import adbc_driver_manager as manager
    import adbc_driver_sqlite

    # closed in order once all is read; on an error the process ends and the
    # system closes them (closing them here would raise over the error itself)
    database = adbc_driver_sqlite.connect(f"file:{request['path']}?mode=ro")
    connection = manager.AdbcConnection(database)

    def execute(sql: str, params: list[Any], batch_rows: int | None = None) -> Any:
        statement = manager.AdbcStatement(connection)
        if batch_rows:
            statement.set_options(**{"adbc.sqlite.query.batch_rows": str(batch_rows)})
        statement.set_sql_query(sql)
        if params:  # bound as ADBC's DB-API binds them: a one-row batch, by position
            statement.bind(pa.record_batch([[value] for value in params],
                                           names=[str(n) for n in range(len(params))]))
        handle, _ = statement.execute_query()
        return statement, pa.RecordBatchReader._import_from_c(handle.address)

    def rows(sql: str, params: list[Any]) -> list[dict[str, Any]]:
        statement, reader = execute(sql, params)
        try:
            return reader.read_all().to_pylist()  # type: ignore[no-any-return]
        finally:
            statement.close()

    state = {"open": False}  # a read transaction of ours is open

    def begin() -> None:
        if not state["open"]:  # deferred: its first read fixes the state it reads
            rows("BEGIN", [])
            state["open"] = True

    def end() -> None:
        if state["open"]:
            rows("COMMIT", [])
            state["open"] = False

    rows(f"PRAGMA busy_timeout={int(request['busy_timeout_ms'])}", [])
    if request.get("one_snapshot"):
        begin()
    out = sys.stdout.buffer
    batch_rows = request.get("batch_rows")
    for sql, params, ranged in request["queries"]:
        if ranged:
            _ranged(execute, rows, begin, end, out, sql, params, ranged, batch_rows)
            continue
        statement, reader = execute(sql, params, batch_rows)
        schema = reader.schema  # every batch of the query in its first types
        _frame(out, memoryview(schema.serialize()))
        held: list[Any] = []
        for batch in reader:
            if batch.num_rows:
                batch = batch if batch.schema == schema else batch.cast(schema)
                if request.get("hold"):
                    held.append(batch)
                else:
                    _frame(out, memoryview(batch.serialize()))
        reader.close()
        statement.close()
        for batch in held:  # the query's read has ended
            _frame(out, memoryview(batch.serialize()))
        _frame(out, b"")
    end()
    connection.close()
    database.close()
    out.write(_LAST)
    out.flush()


def _ranged(execute: Any, rows: Any, begin: Any, end: Any, out: Any, sql: str,
            params: list[Any], ranged: dict[str, Any], batch_rows: int | None) -> None:
    """A query read in ranges of seq (Ranged), each range's rows written once
    its read transaction has ended: by a thread, while the next range is read
    (written after each range, the parent waited for every range's read)."""
    import queue
    import threading

    ready: queue.Queue[list[Any] | None] = queue.Queue(maxsize=1)
    failed: list[BaseException] = []

    def write() -> None:
        try:
            while (held := ready.get()) is not None:
                for item in held:  # the schema, then record batches
                    _frame(out, memoryview(item.serialize()))
        except BaseException as exc:  # the parent gone: raised in the reading thread
            failed.append(exc)
            while ready.get() is not None:  # let the reading thread finish its puts
                pass

    writer = threading.Thread(target=write, name="ranges-writer", daemon=True)
    writer.start()
    try:
        _read_ranges(execute, rows, begin, end, sql, params, ranged, batch_rows, ready, failed)
    finally:
        ready.put(None)
        writer.join()
    if failed:
        raise failed[0]
    _frame(out, b"")


def _read_ranges(execute: Any, rows: Any, begin: Any, end: Any, sql: str,
                 params: list[Any], ranged: dict[str, Any], batch_rows: int | None,
                 ready: Any, failed: list[BaseException]) -> None:
    """Each range's schema (the first's) and batches, put in `ready` once read."""
    bound = next(iter(rows(ranged["bound"], [])[0].values()))
    last = -1 if bound is None else int(bound)
    params = list(params)
    cursor, schema, typed_row_sent = 0, None, False
    while not failed:
        begin()
        params[ranged["start"]] = cursor
        params[ranged["stop"]] = stop = min(cursor + ranged["width"], last + 1)
        statement, reader = execute(sql, params, batch_rows)
        held: list[Any] = []
        if schema is None:  # every range's batches in the first range's types
            schema = reader.schema
            held.append(schema)  # the query's first frame
        size, resume = 0, None
        for batch in reader:
            if not typed_row_sent:
                typed_row_sent = True  # the first range's typed row goes to the parent
            elif not held and batch.num_rows and batch.column(0)[0].as_py() == -1:
                batch = batch.slice(1)  # another range's typed row
            if batch.num_rows:
                held.append(batch if batch.schema == schema else batch.cast(schema))
                size += batch.get_total_buffer_size()
                if size >= ranged["budget"]:  # the range's rest in a read of its own
                    resume = int(batch.column(0)[-1].as_py()) + 1
                    break
        reader.close()
        statement.close()
        end()
        ready.put(held)  # waits for the writer with no read open
        cursor = stop if resume is None else resume
        if cursor > last:
            break


def main() -> int:
    try:
        _serve(json.loads(sys.stdin.buffer.read()))
    except BrokenPipeError:  # the parent stopped reading: nothing to say
        return 1
    except Exception as exc:  # one line, which the parent raises
        sys.stderr.write(f"{type(exc).__name__}: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
