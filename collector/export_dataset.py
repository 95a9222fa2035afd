"""A partitioned Parquet dataset: one directory per day (UTC, of `started_at`)
in the Hive layout, `DIR/day=2016-01-07/part-0.parquet`, which DuckDB
(`read_parquet('DIR/**/*.parquet', hive_partitioning = true)`) and
`pyarrow.dataset` (`partitioning="hive"`) read with partition pruning: a
filter on `day` opens only that day's files.

The batches are those of the single-file export (native readers where there
are, oldest record first); Arrow's dataset writer splits them by day and
keeps a bounded number of files open, so memory stays constant whatever the
size. Records arrive roughly in date order, so each day's records are in one
file, or a few when late uploads reopen a closed day (`part-1`, ...).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from collector import export_postgres, export_sqlite
from collector.export import STATISTICS, _parquet_schema, _python_batches
from collector.store import Filters, MeasurementStore

PARTITIONS = ("day",)
# Memory is bounded by the days open at once times what each holds: its rows
# waiting for a row group (up to the minimum) and the row group being encoded
# (up to the maximum). Records come roughly in date order, so few days are open
# at a time; measured at 10M records (13,700 a day): 518 MiB with 16 days open and
# groups up to 65,536 rows, 334-383 MiB with these, flat from the first million on.
MAX_OPEN_FILES = 4
ROWS_PER_GROUP = (4_096, 16_384)


def _batches(store: MeasurementStore, filters: Filters, include_ip: bool,
             schema: Any) -> Iterator[Any]:
    if export_sqlite.usable(store.engine) or export_postgres.usable(store.engine):
        return export_sqlite.batches(store.engine, filters.clauses(), include_ip, schema)
    return _python_batches(store.stream(filters), include_ip, schema)


def write(store: MeasurementStore, filters: Filters, out: Path, include_ip: bool = False
          ) -> int:
    """Write the dataset to `out` (a new directory: built as `out.partial`,
    renamed when complete); the number of records."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    schema = _parquet_schema()
    with_day = schema.append(pa.field("day", pa.date32()))
    written = 0

    def days() -> Iterator[Any]:
        nonlocal written
        for batch in _batches(store, filters, include_ip, schema):
            written += batch.num_rows
            day = pc.cast(batch.column("started_at"), pa.date32())
            yield pa.RecordBatch.from_arrays([*batch.columns, day], schema=with_day)

    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        ds.write_dataset(
            pa.RecordBatchReader.from_batches(with_day, days()), partial, format="parquet",
            partitioning=ds.partitioning(pa.schema([("day", pa.date32())]), flavor="hive"),
            basename_template="part-{i}.parquet", max_open_files=MAX_OPEN_FILES,
            min_rows_per_group=ROWS_PER_GROUP[0], max_rows_per_group=ROWS_PER_GROUP[1],
            use_threads=True, preserve_order=True,
            file_options=ds.ParquetFileFormat().make_write_options(
                compression="zstd", write_statistics=list(STATISTICS)),
            existing_data_behavior="error")
        if not partial.exists():  # nothing matched: an empty dataset is an empty directory
            partial.mkdir()
        os.replace(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return written
