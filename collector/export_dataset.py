"""A partitioned Parquet dataset: one directory per day (UTC, of `started_at`)
in the Hive layout, `DIR/day=2016-01-07/part-0.parquet`, which DuckDB
(`read_parquet('DIR/**/*.parquet', hive_partitioning = true)`) and
`pyarrow.dataset` (`partitioning="hive"`) read with partition pruning: a
filter on `day` opens only that day's files.

The batches are those of the single-file export (native readers where there
are, oldest record first), cut into runs of one day (slices, no copy) and
appended to that day's file; at most MAX_OPEN_FILES files are open, so memory
stays constant whatever the size. Records arrive roughly in date order, so each
day's records are in one file, or a few when late uploads reopen a closed day
(`part-1`, ...). Arrow's own dataset writer did the same through a hash
partition and copies of every row: 20 % slower (bench/export.py).
"""

from __future__ import annotations

import os
import shutil
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collector import export_postgres, export_sqlite
from collector.export import _parquet_schema, _python_batches, parquet_writer
from collector.outfile import Stopped
from collector.store import Filters, MeasurementStore

PARTITIONS = ("day",)
# Memory is bounded by the days open at once times the rows each holds for its
# next row group (up to ROW_GROUP_ROWS). Records come roughly in date order, so
# few days are open at a time.
MAX_OPEN_FILES = 4
ROW_GROUP_ROWS = 16_384


def _batches(store: MeasurementStore, filters: Filters, include_ip: bool,
             schema: Any) -> Iterator[Any]:
    if export_sqlite.usable(store.engine) or export_postgres.usable(store.engine):
        return export_sqlite.batches(store.engine, filters.clauses(), include_ip, schema)
    return _python_batches(store.stream(filters), include_ip, schema)


def day_runs(batch: Any) -> Iterator[tuple[Any, Any]]:
    """(day, slice) for each run of consecutive records of one day."""
    import pyarrow as pa
    import pyarrow.compute as pc

    days = pc.cast(batch.column("started_at"), pa.date32())
    if not len(days):
        return
    changes = pc.indices_nonzero(pc.not_equal(days[1:], days[:-1])).to_pylist()
    start = 0
    for end in [*(index + 1 for index in changes), len(days)]:
        yield days[start].as_py(), batch.slice(start, end - start)
        start = end


@dataclass
class _DayFile:
    writer: Any
    pending: list[Any] = field(default_factory=list)  # slices waiting for a row group
    rows: int = 0  # in them


class DayFiles:
    """The open day files, least recently written first; a day closed and
    seen again gets its next `part-N`."""

    def __init__(self, root: Path, schema: Any) -> None:
        self.root, self.schema = root, schema
        self.open: OrderedDict[Any, _DayFile] = OrderedDict()
        self.parts: Counter[Any] = Counter()

    def append(self, day: Any, rows: Any) -> None:
        if day not in self.open:
            if len(self.open) >= MAX_OPEN_FILES:
                self.close(next(iter(self.open)))
            self.open[day] = _DayFile(self._writer(day))
        self.open.move_to_end(day)
        file = self.open[day]
        file.pending.append(rows)
        file.rows += rows.num_rows
        if file.rows >= ROW_GROUP_ROWS:
            self._flush(file)

    def close(self, day: Any) -> None:
        file = self.open.pop(day)
        self._flush(file)
        file.writer.close()

    def close_all(self) -> None:
        while self.open:
            self.close(next(iter(self.open)))

    def _writer(self, day: Any) -> Any:
        directory = self.root / f"day={day.isoformat()}"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"part-{self.parts[day]}.parquet"
        self.parts[day] += 1
        return parquet_writer(path, self.schema)

    def _flush(self, file: _DayFile) -> None:
        import pyarrow as pa

        if file.pending:
            table = pa.Table.from_batches(file.pending, self.schema)
            file.writer.write_table(table, row_group_size=table.num_rows)
            file.pending, file.rows = [], 0


def write(store: MeasurementStore, filters: Filters, out: Path, include_ip: bool = False,
          progress: Callable[[int], None] | None = None,
          stop: threading.Event | None = None) -> int:
    """Write the dataset to `out` (a new directory: built as `out.partial`,
    renamed when complete); the number of records. `progress` is told the
    number written so far after each batch; `stop` set: given up (Stopped),
    no part of it left."""
    schema = _parquet_schema()
    written = 0
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.mkdir(parents=True)  # nothing matched: an empty dataset is an empty directory
        files = DayFiles(partial, schema)
        try:
            for batch in _batches(store, filters, include_ip, schema):
                if stop is not None and stop.is_set():
                    raise Stopped
                written += batch.num_rows
                for day, rows in day_runs(batch):
                    files.append(day, rows)
                if progress is not None:
                    progress(written)
        finally:
            files.close_all()
        os.replace(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return written
