"""collector/redaction.py: a key's records deleted in bounded chunks, each
one's leaf hash kept, the rollups taken down to what remains, beside live
uploads on both backends (the CLI's whole path: tests/collector/dashboard/
test_rollups.py, tests/collector/test_export_proof.py)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import sqlalchemy as sa

from collector import redaction
from collector.dashboard.rollup import rebuild_on
from collector.db.engine import make_engine, write_options
from collector.db.schema import (
    dash_endpoint_day,
    dash_key_version,
    dash_method,
    dash_series_day,
    dash_unit,
    log_redactions,
    measurements,
)
from collector.identity import load_or_create
from collector.store import Filters, MeasurementStore
from collector.translog import LEAF_COLUMNS, TransLog, leaf_hash_of_row
from probe.core.signing import ProbeKey
from tests.collector.conftest import make_record, register, signing_client, unique_service
from tests.collector.harness import Collector


def _engine(collector: Collector) -> sa.Engine:
    return make_engine(collector.db or f"sqlite:///{collector.data_dir}/collector.sqlite3")


def _rollups(engine: sa.Engine) -> dict[str, list[tuple[str, ...]]]:
    with engine.connect() as conn:
        return {table.name: sorted(tuple(str(v) for v in row)
                                   for row in conn.execute(sa.select(table)).all())
                for table in (dash_endpoint_day, dash_unit, dash_method, dash_key_version,
                              dash_series_day)}


def _upload(collector: Collector, records: list[dict[str, Any]]) -> None:
    http = signing_client(collector)
    try:
        for start in range(0, len(records), 50):
            answer = http.post("/api/v1/measurements", json=records[start:start + 50])
            assert answer.status_code == 200, answer.text
            assert {r["status"] for r in answer.json()["results"]} == {"accepted"}
    finally:
        http.close()


def test_a_key_is_deleted_in_chunks_keeping_each_leaf_hash(
        collector: Collector, monkeypatch: pytest.MonkeyPatch) -> None:
    service = unique_service()
    gone, stays = ProbeKey.generate(), ProbeKey.generate()
    with collector.client() as http:
        register(http, gone)
        register(http, stays)
    _upload(collector, [make_record(k, service, verdict=v) for k in (gone, stays)
                        for v in ("open", "blocked", "open") * 40])
    engine = _engine(collector)
    with engine.connect() as conn:
        expected = {int(row.log_index): leaf_hash_of_row(row) for row in conn.execute(
            sa.select(*LEAF_COLUMNS).where(measurements.c.key_id == gone.key_id))}
    assert len(expected) == 120
    monkeypatch.setattr(redaction, "CHUNK", 50)
    seen: list[int] = []
    log = TransLog(engine, load_or_create(collector.data_dir))
    assert redaction.redact(engine, log, gone.key_id, "asked", seen.append) == 120
    assert seen == [50, 100, 120]  # told after each chunk, never holding more
    with engine.connect() as conn:
        kept = {int(row.log_index): bytes(row.leaf_hash) for row in conn.execute(
            sa.select(log_redactions).where(log_redactions.c.log_index.in_(list(expected))))}
        left = {key: conn.execute(sa.select(sa.func.count()).select_from(measurements)
                                  .where(measurements.c.key_id == key)).scalar_one()
                for key in (gone.key_id, stays.key_id)}
    assert kept == expected and left == {gone.key_id: 0, stays.key_id: 120}
    assert MeasurementStore(engine).count(Filters(key_id=gone.key_id)) == 0
    assert redaction.redact(engine, log, gone.key_id, None) == 0  # nothing left: nothing done


def test_a_redaction_beside_uploads_to_the_same_series(collector: Collector) -> None:
    """Uploads of other keys to the series being redacted keep landing (on
    PostgreSQL they take the series' locks, then the log's: the redaction takes
    them in the same order, so neither waits for the other forever), and the
    rollups end equal to a rebuild from what remains."""
    service = unique_service()
    keys = [ProbeKey.generate() for _ in range(3)]
    with collector.client() as http:
        for key in keys:
            register(http, key)
    _upload(collector, [make_record(keys[0], service, verdict=v)
                        for v in ("blocked", "open") * 150])
    engine = _engine(collector)
    log = TransLog(engine, load_or_create(collector.data_dir))
    failures: list[BaseException] = []

    def upload_meanwhile() -> None:
        try:
            _upload(collector, [make_record(k, service, verdict="blocked")
                                for k in keys[1:] for _ in range(150)])
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    uploader = threading.Thread(target=upload_meanwhile)
    uploader.start()
    deleted = redaction.redact(engine, log, keys[0].key_id, None)
    uploader.join(timeout=120)
    assert not uploader.is_alive() and not failures, failures
    assert deleted == 300
    after = _rollups(engine)
    with engine.connect().execution_options(**write_options(engine)) as conn, conn.begin():
        rebuild_on(conn)
    assert _rollups(engine) == after
