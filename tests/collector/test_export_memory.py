"""An export's memory follows bytes, not rows (collector/store.py `stream`,
collector/export.py, collector/export_sqlite.py, collector/export_postgres.py):
records may be up to `max_record_bytes` (64 KiB) each, and chunks of 2,000 of
them once made one CSV export of 5,000 such records take 1.2 GB. Here, on each
backend, with the budgets made small: what is read from the database per
chunk, the text pieces, the Arrow batches and the Parquet row groups all stay
within their byte budgets however large the records, and what is exported is
the same as with the default budgets."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from collector import export as export_module
from collector import export_postgres, export_sqlite
from collector.db.engine import make_engine
from collector.export import export
from collector.store import Filters, MeasurementStore
from probe.core.signing import ProbeKey
from tests.collector.conftest import BACKENDS, UploadSigner, database_url, make_record, register
from tests.collector.harness import Collector

FAT, SMALL = "fat-records", "small-records"
FAT_RECORDS, SMALL_RECORDS = 40, 30


@pytest.fixture(scope="module", params=BACKENDS)
def store(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeasurementStore]:
    """40 records of about 57 kB (evidence included), then 30 of about 1 kB."""
    data = tmp_path_factory.mktemp("export-memory")
    db = database_url(request.param, request)
    key = ProbeKey.generate()
    fat = {"blob": ["y" * 100] * 550}
    with Collector(data, db) as collector, collector.client() as client:
        register(client, key)
        client.auth = UploadSigner(key)
        for records in ([make_record(key, FAT, evidence=fat) for _ in range(FAT_RECORDS)],
                        [make_record(key, SMALL) for _ in range(SMALL_RECORDS)]):
            response = client.post("/api/v1/measurements", json=records, timeout=60)
            assert {r["status"] for r in response.json()["results"]} == {"accepted"}
    engine = make_engine(db or f"sqlite:///{data / 'collector.sqlite3'}")
    yield MeasurementStore(engine)
    engine.dispose()


@pytest.fixture
def fetched(monkeypatch: pytest.MonkeyPatch) -> dict[int, list[sa.Row[Any]]]:
    """Every row the store takes from a database cursor, per result."""
    seen: dict[int, list[sa.Row[Any]]] = {}
    alive: list[Any] = []  # so that no other result takes a finished one's id
    original = sa.engine.CursorResult.fetchmany

    def fetchmany(self: Any, size: int | None = None) -> Any:
        rows = original(self, size)
        if id(self) not in seen:
            alive.append(self)
        seen.setdefault(id(self), []).extend(rows)
        return rows

    monkeypatch.setattr(sa.engine.CursorResult, "fetchmany", fetchmany)
    return seen


def _text(rows: list[sa.Row[Any]]) -> int:
    return sum(len(row.record) for row in rows)


def test_stream_reads_a_chunk_s_worth_of_bytes_not_of_rows(
        store: MeasurementStore, fetched: dict[int, list[sa.Row[Any]]]) -> None:
    every = [row.id for rows in store.stream(Filters(service=FAT)) for row in rows]
    largest = max(_text([row]) for rows in store.stream(Filters(service=FAT)) for row in rows)
    assert 50_000 < largest <= 64 * 1024 and len(every) == FAT_RECORDS
    budget = 200_000  # three or four of these records
    fetched.clear()
    chunks = list(store.stream(Filters(service=FAT), budget=budget))
    assert [row.id for rows in chunks for row in rows] == every  # all, in order, once
    assert all(_text(rows) < budget + largest for rows in chunks)
    assert len(chunks) >= FAT_RECORDS * largest // (budget + largest)
    # from the database too: no page read whole and cut afterwards
    assert sum(len(rows) for rows in fetched.values()) == FAT_RECORDS
    assert all(_text(rows) < budget + largest for rows in fetched.values())
    # the default budget: 8 MiB, about 140 of the largest records, not 2,000
    assert MeasurementStore.CHUNK_BYTES // (64 * 1024) < 200


def test_an_api_page_holds_a_page_s_worth_of_bytes_not_of_rows(
        store: MeasurementStore, fetched: dict[int, list[sa.Row[Any]]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`GET /api/v1/measurements?limit=1000` of the largest records was 64 MB a
    request, for anyone to ask for; pages now stop at PAGE_BYTES of records, and
    their cursors still give every record once, in both orders."""
    budget = 200_000
    monkeypatch.setattr(MeasurementStore, "PAGE_BYTES", budget)
    for by_time in (False, True):
        filters = Filters(service=FAT, since=datetime(2000, 1, 1, tzinfo=UTC) if by_time
                          else None)
        seen: list[str] = []
        cursor: Any = None
        pages = 0
        while True:
            fetched.clear()
            if by_time:
                rows, cursor = store.page_by_time(filters, cursor, 1000)
            else:
                rows, cursor = store.page(filters, cursor, 1000)
            pages += 1
            largest = max((_text([row]) for row in rows), default=0)
            assert _text(rows) < budget + largest
            assert all(_text(read) < budget + 64 * 1024 for read in fetched.values())
            seen += [row.id for row in rows]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == FAT_RECORDS and pages >= 10
    small, after = store.page(Filters(service=SMALL), None, 1000)  # a page as before
    assert (len(small), after) == (SMALL_RECORDS, None)


def test_small_records_still_come_a_full_chunk_of_rows_at_a_time(
        store: MeasurementStore) -> None:
    sizes = [len(rows) for rows in store.stream(Filters(service=SMALL), chunk=8)]
    assert sizes == [8, 8, 8, 6]
    assert [len(rows) for rows in store.stream(Filters(service=SMALL))] == [SMALL_RECORDS]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "ooni"])
def test_text_exports_hand_over_pieces_within_their_budget(
        store: MeasurementStore, fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = b"".join(export(store, Filters(), fmt))
    monkeypatch.setattr(MeasurementStore, "CHUNK_BYTES", 150_000)
    monkeypatch.setattr(export_module, "PIECE_BYTES", 100_000)
    pieces = list(export(store, Filters(), fmt))
    assert b"".join(pieces) == whole
    line = max(len(line) for line in whole.splitlines())
    if fmt == "ooni":  # collector/ooni.py: a piece per chunk of the store
        assert all(len(piece) < 3 * (150_000 + line) for piece in pieces)
    else:
        assert all(len(piece) <= 100_000 + line for piece in pieces)
    assert len(pieces) >= len(whole) // (3 * (150_000 + line))


def test_parquet_batches_and_row_groups_stay_within_their_bytes(
        store: MeasurementStore, monkeypatch: pytest.MonkeyPatch) -> None:
    generic = b"".join(export_module.parquet(store.stream(Filters())))
    budget = 300_000
    monkeypatch.setattr(export_sqlite, "DRIVER_ROWS", 2)
    monkeypatch.setattr(export_sqlite, "BATCH_BYTES", budget)
    monkeypatch.setattr(export_postgres, "BATCH_BYTES", budget)
    monkeypatch.setattr(export_postgres, "DRIVER_BYTES", budget // 2)  # a hint: about twice
    monkeypatch.setattr(export_module, "ROW_GROUP_BYTES", 3 * budget)
    schema = export_module._parquet_schema()
    batches = list(export_sqlite.batches(store.engine, [], False, schema))
    texts = [sum(len(value.as_py()) for value in batch.column("measurement"))
             for batch in batches]
    assert sum(batch.num_rows for batch in batches) == FAT_RECORDS + SMALL_RECORDS
    assert max(texts) < 2 * budget + 64 * 1024 and len(batches) >= 4  # not one of 70
    native = b"".join(export(store, Filters(), "parquet"))
    data = pq.ParquetFile(io.BytesIO(native))
    assert data.read().to_pylist() == pq.read_table(io.BytesIO(generic)).to_pylist()
    groups = [data.read_row_group(i, columns=["measurement"]).column(0).to_pylist()
              for i in range(data.num_row_groups)]
    assert len(groups) >= 2
    assert all(sum(map(len, group)) < 3 * budget + 2 * budget + 64 * 1024
               for group in groups)


def test_an_export_in_small_chunks_is_whole(store: MeasurementStore,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The same records in several small chunks: none lost or repeated."""
    monkeypatch.setattr(MeasurementStore, "CHUNK_BYTES", 100_000)
    lines = b"".join(export(store, Filters(), "jsonl")).splitlines()
    ids = [json.loads(line)["measurement"]["id"] for line in lines]
    assert len(ids) == len(set(ids)) == FAT_RECORDS + SMALL_RECORDS
