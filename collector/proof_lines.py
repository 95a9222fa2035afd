"""An export's proof lines (collector/export_proof.py), `{"index":N,"leaf":{...}}`,
written column by column from an Arrow read of the log's leaves, as the text
exports are (collector/export_text.py).

The proof lists every leaf of the log, whatever the export's filter: 10
million at 10 million records. Read as row objects and written leaf by leaf
(`TransLog.leaves`: a row, a dict, its RFC 8785 text) that is about 10 µs a
leaf, half of it the read. Here ADBC's drivers read a range of the log into
Arrow batches in C, and each column becomes its canonical JSON text at once:
the same bytes (tests/collector/test_proof_lines.py). RFC 8785 writes these
leaves' members in key order, strings as JSON does (the escapes orjson
writes), the ASN as a plain integer. A range holding what only the
reference path writes as the log hashed it takes that path, leaf by leaf:
SQLite's text of a time before the year 1000 (`0999-...`, which Python
writes `999-...`), an ASN beyond 2**53 (which the reference refuses, as it
did at ingest). PostgreSQL's times before 1970 are formatted one by one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from collector import export, export_postgres, export_sqlite, export_text
from collector.db.schema import log_redactions
from probe.core.canonical import MAX_SAFE_INTEGER
from probe.core.evidence import LEAF_SCHEMA, leaf_time

# indexes read at a time: a range's batches and lines are about 20 MB
RANGE = 20_000

# the leaf's members in RFC 8785's order (by key), and the column each is
_MEMBERS = (("asn", "asn"), ("attribution", "attribution"), ("cc", "cc"),
            ("check", "check_name"), ("id", "id"), ("key_id", "key_id"),
            ("link_type", "link_type"), ("record_sha256", "record_sha256"), ("role", "role"),
            ("schema", None), ("service", "service"), ("started_at", "started_at"),
            ("upstream", "upstream"), ("verdict", "verdict"))
_COLUMNS = ("log_index", *(column for _, column in _MEMBERS if column))
_INTEGERS = ("log_index", "asn")


def usable(engine: Engine) -> bool:
    return export_sqlite.usable(engine) or export_postgres.usable(engine)


def _query(engine: Engine, start: int, stop: int) -> str:
    """The leaves of [start, stop) in index order; SQLite's starts with one
    typed row of its own (index -1), as collector/export_sqlite.py explains."""
    select = (f"SELECT {', '.join(_COLUMNS)} FROM measurements "
              f"WHERE log_index >= {int(start)} AND log_index < {int(stop)}")
    if engine.dialect.name == "postgresql":
        return f"{select} ORDER BY log_index"
    kinds = [(name, "int" if name in _INTEGERS else "text") for name in _COLUMNS]
    return export_sqlite.with_typed_row(select, kinds, "log_index")


def _connect(engine: Engine) -> Any:
    import adbc_driver_postgresql.dbapi as adbc_pg

    return adbc_pg.connect(export_postgres.uri(engine))


def _started_at(column: Any) -> Any:
    """`leaf_time` texts: PostgreSQL's times formatted, SQLite's text
    `YYYY-MM-DD HH:MM:SS.ffffff` rewritten (as translog._leaf_time_of)."""
    if pa.types.is_timestamp(column.type):
        return export_text.times(column, 6, leaf_time)
    text = export_text.as_text(column)
    if text.null_count or not _all_sqlite_times(text):
        return None
    return export_text.join(pc.utf8_replace_slice(text, 10, 11, "T"), export_text.lit("Z"))


def _all_sqlite_times(text: Any) -> bool:
    """Whether every value is SQLite's `YYYY-MM-DD HH:MM:SS.ffffff` of a year
    from 1000 on (26 characters, not a leading 0: translog._leaf_time_of's test)."""
    if not len(text):
        return True
    return (pc.min_max(pc.binary_length(text)).as_py() == {"min": 26, "max": 26}
            and not pc.any(pc.starts_with(text, "0")).as_py())


def _lines(batch: Any) -> Any:
    """The batch's proof lines, or None when a value needs the reference path."""
    asn = batch.column("asn")
    if asn.null_count < len(asn) and pc.max(pc.abs(asn)).as_py() > MAX_SAFE_INTEGER:
        return None
    started_at = _started_at(batch.column("started_at"))
    if started_at is None:
        return None
    attribution = batch.column("attribution")
    none = pc.fill_null(pc.equal(attribution, ""), True)
    line = export_text.Line('{"index":')
    line.value(export_text.as_text(batch.column("log_index")))
    line.literal(',"leaf":{')
    for n, (key, column) in enumerate(_MEMBERS):
        line.literal(("," if n else "") + f'"{key}":')
        if key == "schema":
            line.literal(orjson.dumps(LEAF_SCHEMA).decode())
        elif key == "asn":
            line.value(export_text.json_int(asn))
        elif key == "attribution":  # `attribution or "none"`
            line.string(pc.if_else(none, export_text.lit("none"), attribution))
        elif key == "started_at":
            line.string(started_at)
        else:
            line.string(batch.column(column))
    line.literal("}}\n")
    return line.joined()


def _redacted(index: int, leaf_hash: bytes) -> bytes:
    return b'{"index":%d,"redacted":"%s"}\n' % (index, leaf_hash.hex().encode())


def lines(engine: Engine, size: int, reference: Any) -> Iterator[bytes]:
    """The proof's lines for the log's first `size` entries, RANGE indexes at
    a time, each range read while the previous one is written (in a thread:
    the driver and Arrow's functions release the interpreter's lock);
    `reference(start, stop)` gives a range's lines leaf by leaf where a value
    needs it."""
    for start, stop, table in export_sqlite.read_ahead(_ranges(engine, size)):
        yield from _range(engine, start, stop, table, reference)


def _ranges(engine: Engine, size: int) -> Iterator[tuple[int, int, Any]]:
    """(start, stop, the leaves stored for [start, stop) as an Arrow table)."""
    bounds = [(start, min(size, start + RANGE)) for start in range(0, size, RANGE)]
    if engine.dialect.name != "postgresql":  # in a process of its own: export_sqlite.read
        pending: list[Any] = []
        for number, batch in export_sqlite.read(  # each range read before it is written
                engine, [(_query(engine, start, stop), []) for start, stop in bounds],
                hold=True):
            if batch is not None:
                pending.append(batch)
                continue
            table = pa.Table.from_batches(pending).slice(1)  # the typed row
            pending = []
            yield *bounds[number], table.combine_chunks()
        return
    connection = _connect(engine)
    try:
        cursor = connection.cursor()
        try:
            for start, stop in bounds:
                cursor.execute(_query(engine, start, stop))
                yield start, stop, cursor.fetch_arrow_table().combine_chunks()
        finally:
            cursor.close()
    finally:
        connection.close()


def _range(engine: Engine, start: int, stop: int, table: Any,
           reference: Any) -> Iterator[bytes]:
    formatted = _lines(table.to_batches()[0]) if table.num_rows else pa.array(
        [], export_text.TEXT)
    if formatted is None:
        yield from reference(start, stop)
        return
    with engine.connect() as conn:
        gone = conn.execute(
            sa.select(log_redactions.c.log_index, log_redactions.c.leaf_hash)
            .where(log_redactions.c.log_index >= start, log_redactions.c.log_index < stop)
            .order_by(log_redactions.c.log_index)).all()
    if gone:  # a few redacted entries: merged by index
        redacted = pa.array([int(index) for index, _ in gone], pa.int64())
        stored = pc.cast(table.column("log_index").combine_chunks(), pa.int64())
        # a record redacted since its range was read (it is read ahead) is
        # written as redacted, once: its line would name the same leaf hash
        kept = pc.invert(pc.is_in(stored, value_set=redacted))
        indexes = pa.concat_arrays([pc.filter(stored, kept), redacted])
        texts = pa.concat_arrays([pc.filter(formatted, kept), pa.array(
            [_redacted(int(index), bytes(leaf_hash)).decode() for index, leaf_hash in gone],
            export_text.TEXT)])
        formatted = pc.take(texts, pc.sort_indices(indexes))
    yield from export_text.pieces(formatted, export.PIECE_BYTES)
