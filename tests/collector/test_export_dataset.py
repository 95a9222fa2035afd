"""`voipwatch-collector export --format parquet --partition day --out DIR`: a
Hive-layout dataset (DIR/day=YYYY-MM-DD/part-N.parquet) holding exactly the
single-file export's rows, which pyarrow.dataset and DuckDB read with
partition pruning (a filter on day opens that day's files only)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from probe.core.record import rfc3339
from probe.core.signing import ProbeKey
from tests.collector.conftest import BACKENDS, UploadSigner, database_url, make_record, register
from tests.collector.harness import Collector

DAYS = {date(2016, 1, 7): 4, date(2016, 1, 8): 3, date(2016, 2, 22): 5}
# as docs/export.md tells researchers: the day typed as a date
HIVE = ds.partitioning(pa.schema([("day", pa.date32())]), flavor="hive")


@pytest.fixture(scope="module", params=BACKENDS)
def collector(request: pytest.FixtureRequest,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    key = ProbeKey.generate()
    records = [make_record(key, "whatsapp", verdict="blocked" if i % 2 else "open",
                           blocking="tcp.reset" if i % 2 else None,
                           started_at=rfc3339(datetime.combine(day, datetime.min.time(), UTC)
                                              + timedelta(hours=i)))
               for day, count in DAYS.items() for i in range(count)]
    data = tmp_path_factory.mktemp(f"dataset-{request.param}")
    with Collector(data, database_url(request.param, request),
                   ["--max-record-age-days", "0"]) as running, running.client() as client:
        register(client, key)
        client.auth = UploadSigner(key)
        response = client.post("/api/v1/measurements", json=records)
        assert {r["status"] for r in response.json()["results"]} == {"accepted"}, response.text
        yield running


@pytest.fixture(scope="module")
def dataset(collector: Collector, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("out") / "all"
    result = collector.cli("export", "--format", "parquet", "--partition", "day",
                           "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def test_hive_layout_one_directory_per_day(dataset: Path) -> None:
    assert sorted(p.name for p in dataset.iterdir()) == [f"day={d}" for d in sorted(DAYS)]
    for day in DAYS:
        assert [p.name for p in (dataset / f"day={day}").iterdir()] == ["part-0.parquet"]
    assert dataset.with_name("all.proof").exists()  # the same proof as a single file's


def test_the_dataset_holds_the_single_file_export(dataset: Path, collector: Collector,
                                                  tmp_path: Path) -> None:
    single = tmp_path / "all.parquet"
    assert collector.cli("export", "--format", "parquet", "--out", str(single)).returncode == 0
    whole = pq.read_table(single).to_pylist()
    table = ds.dataset(dataset, format="parquet", partitioning=HIVE).to_table().to_pylist()
    assert sorted(r["id"] for r in table) == sorted(r["id"] for r in whole)
    by_id = {r["id"]: r for r in whole}
    for row in table:
        assert row.pop("day") == row["started_at"].date()
        assert row == by_id[row["id"]]


def test_pyarrow_dataset_prunes_partitions(dataset: Path) -> None:
    data = ds.dataset(dataset, format="parquet", partitioning=HIVE)
    day = date(2016, 1, 8)
    fragments = list(data.get_fragments(filter=ds.field("day") == day))
    assert [Path(f.path).parent.name for f in fragments] == [f"day={day}"]
    assert data.to_table(filter=ds.field("day") == day).num_rows == DAYS[day]


def test_duckdb_reads_only_the_days_asked(dataset: Path) -> None:
    files = f"read_parquet('{dataset}/**/*.parquet', hive_partitioning = true)"
    query = (f"SELECT count(*), count(*) FILTER (WHERE verdict = 'blocked') FROM {files} "
             "WHERE day = DATE '2016-02-22'")
    connection = duckdb.connect()
    assert connection.sql(query).fetchall() == [(5, 2)]
    plan = "\n".join(row[1] for row in connection.sql("EXPLAIN ANALYZE " + query).fetchall())
    assert re.search(r"Total Files Read:\s*1\b", plan), plan
    assert connection.sql(f"SELECT count(*) FROM {files}").fetchall() == [(sum(DAYS.values()),)]


@pytest.mark.parametrize("args, message", [
    (["--format", "jsonl", "--partition", "day"], "only with --format parquet"),
    (["--format", "parquet", "--partition", "day", "--out", "-"], "not -"),
])
def test_user_errors(collector: Collector, args: list[str], message: str,
                     tmp_path: Path) -> None:
    out = [] if "--out" in args else ["--out", str(tmp_path / "x")]
    result = collector.cli("export", *args, *out)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_an_existing_directory_is_not_overwritten(collector: Collector, tmp_path: Path) -> None:
    result = collector.cli("export", "--format", "parquet", "--partition", "day",
                           "--out", str(tmp_path))
    assert result.returncode == 2 and "it exists" in result.stderr


def _batch(days: list[int]) -> pa.RecordBatch:
    """Records with only what the day writer looks at: started_at (days since
    2016-01-01) and a sequence number to follow their order."""
    start = datetime(2016, 1, 1, 12, tzinfo=UTC)
    schema = pa.schema([("seq", pa.int64()), ("started_at", pa.timestamp("ms", tz="UTC"))])
    return pa.RecordBatch.from_arrays(
        [pa.array(range(len(days)), pa.int64()),
         pa.array([start + timedelta(days=d) for d in days], schema.field(1).type)], schema=schema)


def test_a_batch_is_cut_into_runs_of_one_day() -> None:
    from collector.export_dataset import day_runs

    runs = [(day, rows.column("seq").to_pylist())
            for day, rows in day_runs(_batch([0, 0, 1, 1, 0]))]
    assert runs == [(date(2016, 1, 1), [0, 1]), (date(2016, 1, 2), [2, 3]),
                    (date(2016, 1, 1), [4])]
    assert list(day_runs(_batch([]))) == []


def test_day_files_stay_few_and_a_reopened_day_gets_its_next_part(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from collector import export_dataset
    from collector.export_dataset import DayFiles, day_runs

    monkeypatch.setattr(export_dataset, "MAX_OPEN_FILES", 2)
    monkeypatch.setattr(export_dataset, "ROW_GROUP_ROWS", 2)
    batch = _batch([0, 0, 0, 1, 2, 0, 0])  # day 0 closed by days 1 and 2, then seen again
    files = DayFiles(tmp_path, batch.schema)
    for day, rows in day_runs(batch):
        files.append(day, rows)
        assert len(files.open) <= 2
    files.close_all()
    found = {str(p.relative_to(tmp_path)): pq.read_table(p).column("seq").to_pylist()
             for p in sorted(tmp_path.rglob("*.parquet"))}
    assert found == {"day=2016-01-01/part-0.parquet": [0, 1, 2],
                     "day=2016-01-01/part-1.parquet": [5, 6],
                     "day=2016-01-02/part-0.parquet": [3],
                     "day=2016-01-03/part-0.parquet": [4]}
    # a group is written once ROW_GROUP_ROWS are pending: whole runs, so 3 here
    groups = pq.ParquetFile(tmp_path / "day=2016-01-01/part-0.parquet").metadata
    assert [groups.row_group(i).num_rows for i in range(groups.num_row_groups)] == [3]
