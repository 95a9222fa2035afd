"""Exports from SQLite, read natively: ADBC's SQLite driver turns rows into
Arrow record batches in C, so no Python object is built per row or per
value. The generic path (collector/export.py) builds about 25 objects per
record and tops out near 80k records/s to Parquet; this one reaches the
>= 200k/s the project targets (bench/export.py). Parquet is written from
these batches, JSONL and CSV too (collector/export_text.py); PostgreSQL's
reader is collector/export_postgres.py.

The driver infers each column's Arrow type from the first rows it reads and
fails if a later value disagrees (a column NULL in the first thousand rows,
then text). So the query starts with one typed row of its own (seq -1: text
columns '', integers 0), merged ahead of the real rows by `ORDER BY seq`, and
dropped from the first batch. The records are read in ranges of `seq`, none
held open while the reader waits to write (collector/sqlite_reader.py: a long
read keeps the write-ahead log from being reset).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from collector.db.engine import BUSY_TIMEOUT_MS
from collector.db.schema import measurements, probes

if TYPE_CHECKING:
    from collector.sqlite_reader import Ranged

# output column -> (source column, Arrow kind); the order is export.COLUMNS
_m = measurements.c
_SOURCES: tuple[tuple[str, Any, str], ...] = (
    ("id", _m.id, "text"), ("started_at", _m.started_at, "time"),
    ("received_at", _m.received_at, "time"), ("service", _m.service, "text"),
    ("check", _m.check_name, "text"), ("role", _m.role, "text"),
    ("transport", _m.transport, "text"), ("host", _m.endpoint_host, "text"),
    ("port", _m.endpoint_port, "int"), ("verdict", _m.verdict, "text"),
    ("blocking", _m.blocking, "text"), ("link_type", _m.link_type, "text"),
    ("upstream", _m.upstream, "text"), ("upstream_source", _m.upstream_source, "text"),
    ("upstream_confidence", _m.upstream_confidence, "text"),
    ("probe_cc", _m.cc, "text"), ("probe_asn", _m.asn, "int"),
    ("probe_as_org", _m.as_org, "text"), ("geoip_source", _m.geoip_source, "text"),
    ("geoip_date", _m.geoip_date, "text"), ("key_id", _m.key_id, "text"),
    ("key_revoked_at", probes.c.revoked_at, "time"), ("public_key", probes.c.public_key, "text"),
    ("probe_ip", _m.probe_ip, "text"), ("measurement", _m.record, "text"),
    ("record_sha256", _m.record_sha256, "text"), ("log_index", _m.log_index, "int"),
    ("late_seconds", _m.late_seconds, "int"), ("attribution", _m.attribution, "text"),
    ("upload_cc", _m.upload_cc, "text"), ("upload_asn", _m.upload_asn, "int"),
    ("upload_as_org", _m.upload_as_org, "text"),
    ("attribution_mismatch", _m.attribution_mismatch, "int"),
)
_SENTINEL = {"text": "''", "time": "''", "int": "0"}
BATCH_ROWS = 2000  # rows per batch, as the generic path (PostgreSQL: export_postgres)
# ... and at most about BATCH_BYTES: records may be up to max_record_bytes
# (64 KiB) each, and 2,000 of those are 125 MiB a batch, four held at once
# (the one the driver fills, the reader's, the queue's two) beside the row
# group being filled. So the driver reads DRIVER_ROWS at a time (31 MiB of
# the largest records), and its batches are joined into one of up to
# BATCH_ROWS or BATCH_BYTES (the casts and the Parquet writer cost per batch,
# the copy less: within 5 % of 2,000-row reads; fewer rows a read cost the
# driver more, 250: 15 % slower)
DRIVER_ROWS = 500
BATCH_BYTES = 32 * 1024 * 1024
_END = object()


def usable(engine: Engine) -> bool:
    """A SQLite database in a file, and the driver installed."""
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return False
    from importlib.util import find_spec

    return find_spec("adbc_driver_sqlite") is not None  # not loaded here: sqlite_reader


# the columns of a record's probe key, joined in Arrow (_Keys): in SQLite the
# join's lookup and two more values a row took 10-20 % of the reader's time
_FROM_PROBES = tuple((name, column, kind) for name, column, kind in _SOURCES
                     if column.table is probes)
_RECORD_SOURCES = tuple(source for source in _SOURCES if source[1].table is not probes)


def _sql(clauses: list[Any], include_ip: bool, engine: Engine
         ) -> tuple[str, list[Any], Ranged]:
    """The query text of the records' own columns (in ranges of seq: Ranged),
    its positional parameters, bound the way SQLAlchemy binds them (times as
    the naive UTC text the column stores), and where its range goes."""
    from collector.sqlite_reader import Ranged

    columns = [sa.literal_column("NULL").label(name)
               if name == "probe_ip" and not include_ip else column.label(name)
               for name, column, _ in _RECORD_SOURCES]
    select = sa.select(_m.seq.label("seq"), *columns).where(
        *clauses, _m.seq >= sa.bindparam("range_start", 0),
        _m.seq < sa.bindparam("range_stop", 0))
    compiled = select.compile(dialect=engine.dialect)
    params = []
    for name in compiled.positiontup or ():
        bind = compiled.binds[name]
        value = compiled.params[name]
        processor = bind.type.dialect_impl(engine.dialect).bind_processor(engine.dialect)
        params.append(processor(value) if processor else value)
    kinds = [("seq", "int"), *((name, kind) for name, _, kind in _RECORD_SOURCES)]
    positions = list(compiled.positiontup or ())
    sql = _in_seq_order(engine, with_typed_row(str(compiled), kinds, "seq"), params)
    return sql, params, Ranged(positions.index("range_start"), positions.index("range_stop"),
                               "SELECT max(seq) FROM measurements")


def _in_seq_order(engine: Engine, sql: str, params: list[Any]) -> str:
    """`sql`, read in seq order by every range: a plan that sorts (an index on
    another column, `cc` alone) would sort every remaining matching row again
    for each range, so such a query walks the table in seq order instead."""
    with engine.connect() as conn:
        plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, tuple(params)).fetchall()
    if any("TEMP B-TREE" in str(step[-1]) for step in plan):
        return sql.replace("FROM measurements", "FROM measurements NOT INDEXED", 1)
    return sql


def _keys_sql() -> str:
    """Every probe key with the columns an export takes from it."""
    columns = ", ".join(f'{column.name} AS "{name}"' for name, column, _ in _FROM_PROBES)
    kinds = [("rank", "int"), ("key_id", "text"),
             *((name, kind) for name, _, kind in _FROM_PROBES)]
    return with_typed_row(f'SELECT 0 AS "rank", key_id AS "key_id", {columns} FROM probes',
                          kinds, "rank")


def with_typed_row(select: str, kinds: list[tuple[str, str]], order: str) -> str:
    """`select` (its columns `kinds`: name, "text", "time" or "int") after one
    typed row of its own, `order` -1, and ordered by `order`: the driver types
    each column from that row (the caller drops it from the first batch)."""
    typed = ", ".join(f'{-1 if name == order else _SENTINEL[kind]} AS "{name}"'
                      for name, kind in kinds)
    return f"SELECT {typed} UNION ALL {select} ORDER BY {order}"


def read(engine: Engine, queries: list[Any], batch_rows: int | None = None,
         one_snapshot: bool = False, hold: bool = False) -> Iterator[tuple[int, Any]]:
    """The queries' batches, read by ADBC from the engine's SQLite file in a
    process of its own (collector/sqlite_reader.py says why), waiting out a
    lock as the engine's connections do; `one_snapshot`, `hold`: as
    sqlite_reader.batches."""
    from collector import sqlite_reader

    assert engine.url.database
    return sqlite_reader.batches(engine.url.database, queries, BUSY_TIMEOUT_MS, batch_rows,
                                 one_snapshot, hold)


def batches(engine: Engine, clauses: list[Any], include_ip: bool, schema: Any,
            budget: int | None = None, ahead_bytes: int = 0) -> Iterator[Any]:
    """Record batches of `schema` (export.COLUMNS), oldest record first, of at
    most about `budget` bytes (default: the backend's BATCH_BYTES), read ahead
    in a thread (two batches, or up to `ahead_bytes`: read_ahead): the
    database and the driver work while the caller compresses what came before
    (both release the GIL), on two cores. PostgreSQL's reader is
    collector/export_postgres.py."""
    if engine.dialect.name == "postgresql":
        from collector import export_postgres

        reader = export_postgres.read(engine, clauses, include_ip, schema, _SOURCES,
                                      export_postgres.BATCH_ROWS, budget)
    else:
        reader = _read(engine, clauses, include_ip, schema, budget or BATCH_BYTES)
    return read_ahead(reader, ahead_bytes)


def read_ahead(items: Iterator[Any], ahead_bytes: int = 0) -> Iterator[Any]:
    """`items`, each produced ahead in a thread: the database and its driver
    read while the caller works on what came before. At most two wait, or
    more while those waiting hold at most `ahead_bytes` (record batches, by
    their `nbytes`): a Parquet writer takes a whole row group at once, and
    with two batches ahead the reader stopped while the group was compressed,
    then the writer waited for the next group's rows (5M records from SQLite
    to one Parquet file, 5 paired runs: a row group's worth ahead, 1.1-1.4x
    faster, 9-17 MiB more at the peak; the dataset by day, whose row groups
    are a day's records, gained nothing). An error is raised in the caller,
    and a caller that stops early ends the thread."""
    waiting: deque[tuple[Any, int]] = deque()
    held = 0  # bytes waiting
    stopped = False
    turn = threading.Condition()
    finished = threading.Event()

    def room(size: int) -> bool:
        return len(waiting) < 2 or (ahead_bytes > 0 and held + size <= ahead_bytes)

    def produce() -> None:
        nonlocal held
        try:
            try:
                for item in items:
                    size = item.nbytes if ahead_bytes else 0
                    with turn:
                        while not stopped and not room(size):
                            turn.wait()
                        if stopped:
                            return
                        waiting.append((item, size))
                        held += size
                        turn.notify_all()
                last: Any = _END
            except BaseException as exc:  # handed to the consumer, raised there
                last = exc
            with turn:
                waiting.append((last, 0))
                turn.notify_all()
        finally:
            finished.set()

    thread = threading.Thread(target=produce, name="export-reader", daemon=True)
    thread.start()
    try:
        while True:
            with turn:
                while not waiting:
                    turn.wait()
                item, size = waiting.popleft()
                held -= size
                turn.notify_all()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:  # the consumer may stop early (a client gone): end the reader
        with turn:
            stopped = True
            waiting.clear()
            turn.notify_all()
        finished.wait()  # an event, as outfile.beside: an interrupted join() is bpo-45274


def _typed(column: Any, kind: str, to: Any) -> Any:
    import pyarrow as pa

    if kind == "time":  # "YYYY-MM-DD HH:MM:SS.ffffff", UTC
        return column.cast(pa.timestamp("us")).cast(pa.timestamp("ms"), safe=False).cast(to)
    return column if column.type == to else column.cast(to)


class _Keys:
    """The probe keys' columns, in `schema`'s types, joined to records by
    key_id as the generic path's inner join does (a record whose key is not
    there is left out)."""

    def __init__(self, batches: list[Any], schema: Any) -> None:
        import pyarrow as pa

        table = pa.concat_batches(batches).slice(1)  # the typed row
        # a key's row, looked up once per key a batch holds: `index_in` hashed
        # every key for every batch (19 ms a batch of 2,000 at 100,000 keys)
        self.rows = {key: row for row, key in enumerate(table.column("key_id").to_pylist())}
        self.columns = {name: _typed(table.column(name), kind, schema.field(name).type)
                        for name, _, kind in _FROM_PROBES}

    def join(self, batch: Any) -> tuple[Any, dict[str, Any]]:
        """`batch` without records of unknown keys, and its keys' columns."""
        import pyarrow as pa
        import pyarrow.compute as pc

        keys = batch.column("key_id").dictionary_encode()
        rows = pa.array([self.rows.get(key) for key in keys.dictionary.to_pylist()],
                        pa.int64()).take(keys.indices)
        if rows.null_count:
            known = pc.is_valid(rows)
            batch, rows = batch.filter(known), rows.filter(known)
        return batch, {name: column.take(rows) for name, column in self.columns.items()}


def _read(engine: Engine, clauses: list[Any], include_ip: bool, schema: Any,
          budget: int) -> Iterator[Any]:
    import pyarrow as pa

    sql, params, ranged = _sql(clauses, include_ip, engine)
    kinds = {name: kind for name, _, kind in _RECORD_SOURCES}
    keys: _Keys | None = None

    def typed(batches: list[Any]) -> Any:
        """The driver's batches as one, in `schema`'s types (the writer and
        the casts both cost per batch: a copy into one costs less; in
        malloc's memory, as the driver's: Arrow's own pool kept 30 MB more)."""
        batch = batches[0] if len(batches) == 1 else pa.concat_batches(
            batches, memory_pool=pa.system_memory_pool())
        assert keys is not None
        batch, joined = keys.join(batch)
        arrays = [joined[field.name] if field.name in joined
                  else _typed(batch.column(field.name), kinds[field.name], field.type)
                  for field in schema]
        return pa.RecordBatch.from_arrays(arrays, schema=schema)

    first = True
    key_batches: list[Any] = []
    pending: list[Any] = []
    rows = size = 0
    # the keys, the last seq and the first range of records in one read
    # transaction: a key revoked meanwhile is exported as of that state
    for query, batch in read(engine, [(_keys_sql(), []), (sql, params, ranged)],
                             max(1, min(BATCH_ROWS, DRIVER_ROWS)), one_snapshot=True):
        if query == 0:
            if batch is not None:
                key_batches.append(batch)
            else:
                keys = _Keys(key_batches, schema)
            continue
        if batch is None:  # the query's end (the reader then checks the child's exit)
            continue
        if first:
            batch, first = batch.slice(1), False  # the typed sentinel row
        if not batch.num_rows:
            continue
        # the buffers' sizes: `nbytes` walks every buffer's referenced range (100 µs a batch)
        batch_bytes = batch.get_total_buffer_size()
        if pending and (rows + batch.num_rows > BATCH_ROWS or size + batch_bytes > budget):
            yield typed(pending)
            pending, rows, size = [], 0, 0
        pending.append(batch)
        rows += batch.num_rows
        size += batch_bytes
    if pending:
        yield typed(pending)
