"""Parquet exports from PostgreSQL, read natively: ADBC's PostgreSQL driver
reads the result with COPY in binary form straight into Arrow record
batches, so no Python object is built per row or per value (the generic path
in collector/export.py tops out near 80k records/s; bench/export.py). The
columns and types are those of the SQLite path (collector/export_sqlite.py),
which also runs this reader one batch ahead in a thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine

from collector.db.schema import measurements, probes

# rows per batch handed to the writer: each batch is regrouped and typed column
# by column in Python, so larger ones cost less per row (2,000: 171k records/s
# to one file at 1M records, 8,192: 234k; bench/export.py)
BATCH_ROWS = 8_192
# ... or fewer, once a batch holds this many bytes (records may be up to
# max_record_bytes, 64 KiB: 8,192 of those would be 512 MiB)
BATCH_BYTES = 16 * 1024 * 1024
# the driver's own batches, sized in bytes (its hint: they come about twice as
# large, 31 MiB for a hint of 16, its default)
DRIVER_BYTES = 4 * 1024 * 1024


def usable(engine: Engine) -> bool:
    if engine.dialect.name != "postgresql":
        return False
    try:
        import adbc_driver_postgresql.dbapi  # noqa: F401
    except ImportError:
        return False
    return True


def uri(engine: Engine) -> str:
    """libpq's form of the engine's URL (no SQLAlchemy driver name)."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def _sql(clauses: list[Any], include_ip: bool, sources: Any) -> tuple[str, list[Any]]:
    """The query with the filters' values written in it (SQLAlchemy quotes
    them; they are checked values: names, codes, numbers, times): the driver
    streams a query without parameters through COPY, but holds the whole
    result of one with parameters in memory. Else with $1, $2... parameters."""
    m = measurements.c
    columns = [sa.cast(sa.null(), sa.Text).label(name)
               if name == "probe_ip" and not include_ip else column.label(name)
               for name, column, _ in sources]
    select = (sa.select(*columns)
              .select_from(measurements.join(probes, probes.c.key_id == m.key_id))
              .where(*clauses).order_by(m.seq))
    dialect = postgresql.psycopg.dialect(paramstyle="numeric_dollar")  # type: ignore[attr-defined]
    try:
        return str(select.compile(dialect=dialect,
                                  compile_kwargs={"literal_binds": True})), []
    except (NotImplementedError, sa.exc.CompileError):
        pass
    compiled = select.compile(dialect=dialect)
    params = [compiled.params[name] for name in compiled.positiontup or ()]
    return str(compiled), params


def read(engine: Engine, clauses: list[Any], include_ip: bool, schema: Any, sources: Any,
         batch_rows: int, budget: int | None = None) -> Iterator[Any]:
    import adbc_driver_postgresql.dbapi as adbc
    import pyarrow as pa

    sql, params = _sql(clauses, include_ip, sources)
    budget = budget or BATCH_BYTES
    connection = adbc.connect(uri(engine))
    try:
        cursor = connection.cursor()
        cursor.adbc_statement.set_options(
            **{"adbc.postgresql.batch_size_hint_bytes": str(DRIVER_BYTES)})
        try:
            cursor.execute(sql, params or None)
            reader = cursor.fetch_record_batch()
            pending: list[Any] = []
            rows = size = 0
            for batch in reader:  # the driver's batches are sized in bytes: regroup
                while batch.num_rows:
                    take = batch.slice(0, batch_rows - rows)
                    pending.append(take)
                    rows += take.num_rows
                    size += take.nbytes
                    batch = batch.slice(take.num_rows)
                    if rows == batch_rows or size >= budget:
                        yield _typed(pa.Table.from_batches(pending), schema)
                        pending, rows, size = [], 0, 0
            if rows:
                yield _typed(pa.Table.from_batches(pending), schema)
        finally:
            cursor.close()
    finally:
        connection.close()


def _typed(table: Any, schema: Any) -> Any:
    import pyarrow as pa

    arrays = []
    for field in schema:
        column = table.column(field.name).combine_chunks()
        if pa.types.is_timestamp(field.type) and column.type != field.type:
            column = column.cast(pa.timestamp("us", tz="UTC")).cast(field.type, safe=False)
        elif column.type != field.type:
            column = column.cast(field.type)
        arrays.append(column)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
