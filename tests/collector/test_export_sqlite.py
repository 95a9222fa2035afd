"""The native Parquet paths (SQLite and PostgreSQL, through ADBC) write exactly
what the generic path writes, for every filter, including columns that are NULL
for many rows before their first value (the SQLite driver's type inference
would fail there on its own)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from collector import export_postgres, export_sqlite
from collector.db.engine import make_engine
from collector.export import export, parquet
from collector.store import Filters, MeasurementStore
from probe.core.record import rfc3339
from probe.core.signing import ProbeKey
from tests.collector.conftest import BACKENDS, database_url, make_record, revoked_store


@pytest.fixture(scope="module", params=BACKENDS)
def store(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeasurementStore]:
    """A collector on each backend holding: open records first (no blocking, key not
    revoked), then blocked ones, then records of a key revoked afterwards."""
    data = tmp_path_factory.mktemp("export-sqlite")
    first, second = ProbeKey.generate(), ProbeKey.generate()
    start = datetime(2016, 1, 7, tzinfo=UTC)
    records = [make_record(first, "whatsapp", started_at=rfc3339(start + timedelta(hours=i)))
               for i in range(7)]
    records += [make_record(first, "viber", verdict="blocked", blocking="tcp.reset",
                            started_at=rfc3339(start + timedelta(days=60, hours=i)))
                for i in range(5)]
    records += [make_record(second, "skype", started_at=rfc3339(start + timedelta(days=300)),
                            endpoint={"check": "dns", "host": "skype.com", "port": 53,
                                      "transport": "udp", "role": "call"})
                for _ in range(3)]
    engine = revoked_store(data, database_url(request.param, request), first, second,
                           records, ["--max-record-age-days", "0"])
    yield MeasurementStore(engine)
    engine.dispose()


def rows(data: bytes) -> list[dict[str, Any]]:
    return pq.read_table(io.BytesIO(data)).to_pylist()


@pytest.mark.parametrize("filters", [
    Filters(),
    Filters(service="viber"),
    Filters(verdict="open"),
    Filters(since=datetime(2016, 2, 1, tzinfo=UTC), until=datetime(2016, 11, 4, tzinfo=UTC)),
    Filters(since=datetime(2016, 1, 7, 3, 30, tzinfo=UTC)),  # the same day as records
    Filters(service="no-such-service"),
    Filters(upstream="unknown"),  # read from the record's JSON: none of these has one
], ids=["all", "service", "verdict", "since-until", "since-within-a-day", "nothing",
        "upstream"])
@pytest.mark.parametrize("include_ip", [False, True])
def test_native_path_writes_what_the_generic_path_writes(
        store: MeasurementStore, filters: Filters, include_ip: bool,
        monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    name = request.node.callspec.id.split("-", 2)[2]
    for reader in (export_sqlite, export_postgres):  # NULLs over several batches
        monkeypatch.setattr(reader, "BATCH_ROWS", 3)
    assert export_sqlite.usable(store.engine) or export_postgres.usable(store.engine)
    native = b"".join(export(store, filters, "parquet", include_ip))
    generic = b"".join(parquet(store.stream(filters), include_ip))
    assert rows(native) == rows(generic)
    assert len(rows(native)) == {"all": 15, "service": 5, "verdict": 10, "since-until": 8,
                                 "since-within-a-day": 11, "nothing": 0, "upstream": 15}[name]
    assert pq.read_schema(io.BytesIO(native)) == pq.read_schema(io.BytesIO(generic))


def test_native_export_content(store: MeasurementStore) -> None:
    exported = rows(b"".join(export(store, Filters(), "parquet")))
    assert [r["service"] for r in exported] == ["whatsapp"] * 7 + ["viber"] * 5 + ["skype"] * 3
    assert [r["blocking"] for r in exported] == [None] * 7 + ["tcp.reset"] * 5 + [None] * 3
    assert exported[0]["started_at"] == datetime(2016, 1, 7, tzinfo=UTC)
    assert exported[-1]["port"] == 53 and exported[-1]["check"] == "dns"
    revoked = [r["key_revoked_at"] for r in exported]
    assert revoked[:12] == [None] * 12 and all(isinstance(t, datetime) for t in revoked[12:])
    assert all(r["probe_ip"] is None for r in exported)  # only with include_ip
    assert "é ✓" in exported[0]["measurement"]


def test_parquet_is_written_as_its_row_groups_fill(store: MeasurementStore,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from collector import export as export_module

    for reader in (export_sqlite, export_postgres):
        monkeypatch.setattr(reader, "BATCH_ROWS", 3)
    monkeypatch.setattr(export_module, "ROW_GROUP_ROWS", 4)
    parts = [part for part in export(store, Filters(), "parquet") if part]
    data = pq.ParquetFile(io.BytesIO(b"".join(parts)))
    sizes = [data.metadata.row_group(i).num_rows for i in range(data.num_row_groups)]
    assert len(sizes) == 3 and sum(sizes) == 15 and all(n >= 4 for n in sizes[:-1])
    assert len(parts) >= 3  # bytes handed over group by group, not at the end
    assert data.metadata.row_group(0).column(
        export_module.COLUMNS.index("measurement")).statistics is None


def test_memory_database_uses_the_generic_path(tmp_path: Path) -> None:
    assert not export_sqlite.usable(make_engine("sqlite://"))


def test_an_export_abandoned_early_ends_its_reader(store: MeasurementStore,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    for reader in (export_sqlite, export_postgres):  # more batches than the queue holds
        monkeypatch.setattr(reader, "BATCH_ROWS", 2)
    stream = export(store, Filters(), "parquet")
    assert next(stream)  # the file's first bytes; the reader is now ahead
    stream.close()  # what a client that disconnects does to the response
    assert not [t for t in threading.enumerate() if t.name == "export-reader"]


class _Sized:
    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes


def _taken_once_blocked(sizes: list[int], ahead_bytes: int) -> int:
    """How many items read_ahead takes from its source while its consumer
    holds the first and asks for nothing more (the producer then waits)."""
    import time

    taken = 0

    def source() -> Iterator[_Sized]:
        nonlocal taken
        for size in sizes:
            taken += 1
            yield _Sized(size)

    stream = export_sqlite.read_ahead(source(), ahead_bytes)
    assert next(stream).nbytes == sizes[0]
    settled, deadline = taken, time.monotonic() + 5
    while time.monotonic() < deadline:  # until the producer stops taking
        time.sleep(0.2)
        if taken == settled:
            break
        settled = taken
    stream.close()
    return taken


def test_read_ahead_holds_two_items_without_a_byte_budget() -> None:
    # the consumer's one, two waiting, one in the producer's hand
    assert _taken_once_blocked([1] * 50, 0) == 4


def test_read_ahead_reads_further_within_its_byte_budget() -> None:
    assert _taken_once_blocked([1] * 50, 5) == 1 + 5 + 1
    assert _taken_once_blocked([3] * 50, 10) == 1 + 3 + 1


def test_read_ahead_passes_items_larger_than_its_budget_two_at_a_time() -> None:
    assert _taken_once_blocked([100] * 50, 5) == 4


def test_read_ahead_gives_every_item_in_order_and_raises_the_source_s_error() -> None:
    assert [item.nbytes for item in export_sqlite.read_ahead(
        iter([_Sized(n) for n in range(100)]), 50)] == list(range(100))

    def failing() -> Iterator[_Sized]:
        yield _Sized(1)
        raise OSError("disk gone")

    stream = export_sqlite.read_ahead(failing(), 10)
    assert next(stream).nbytes == 1
    with pytest.raises(OSError, match="disk gone"):
        next(stream)


def test_a_record_of_an_unknown_key_is_left_out_as_the_generic_path_does(
        tmp_path: Path) -> None:
    """SQLite's records and keys are joined in Arrow: as the generic path's
    join, a record whose key is not among the probes' is not exported."""
    import sqlalchemy as sa

    from collector.db.schema import measurements

    key = ProbeKey.generate()
    records = [make_record(key, "whatsapp") for _ in range(3)]
    engine = revoked_store(tmp_path, None, key, ProbeKey.generate(), records, [])
    with engine.begin() as conn:
        row = dict(conn.execute(sa.select(measurements).limit(1)).mappings().one())
        last = conn.execute(sa.select(sa.func.max(measurements.c.log_index))).scalar_one()
        conn.execute(measurements.insert().values(
            {**row, "seq": None, "id": "orphan", "key_id": "ab" * 32, "log_index": last + 1}))
    store = MeasurementStore(engine)
    native = rows(b"".join(export(store, Filters(), "parquet")))
    assert native == rows(b"".join(parquet(store.stream(Filters()), False)))
    assert sorted(r["id"] for r in native) == sorted(r["id"] for r in records)
    engine.dispose()
