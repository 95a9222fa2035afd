"""Crashes at any moment lose nothing and store nothing twice: the collector
SIGKILLed in the middle of an upload and restarted, the probe SIGKILLed in the
middle of an upload and run again. On SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from collector.db.engine import make_engine
from collector.db.schema import measurements
from probe.core.signing import ProbeKey
from probe.store.spool import Spool
from probe.store.state import spool_path
from tests.collector.conftest import BACKENDS, UploadSigner, database_url, make_record, register
from tests.collector.harness import Collector
from tests.conftest import probe_command

RECORDS = 3000


@pytest.fixture(params=BACKENDS)
def fresh_collector(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Collector]:
    collector = Collector(tmp_path / "collector", database_url(request.param, request))
    try:
        yield collector.start()
    finally:
        collector.stop()


def stored_ids(collector: Collector, key: ProbeKey) -> list[str]:
    engine = make_engine(collector.db or f"sqlite:///{collector.data_dir}/collector.sqlite3")
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.select(measurements.c.id)
                                     .where(measurements.c.key_id == key.key_id)).scalars())
    finally:
        engine.dispose()


def spool_records(collector: Collector, count: int = RECORDS) -> tuple[ProbeKey, set[str]]:
    """A registered probe (key in $VOIPWATCH_HOME) with `count` records spooled."""
    from probe.core.signing import write_key
    from probe.store.state import ensure_home, key_path, load_config, save_config

    key = ProbeKey.generate()
    ensure_home()
    write_key(key, key_path())
    config = load_config()
    config.collector = collector.url
    save_config(config)
    with collector.client() as http:
        register(http, key)
    records = [make_record(key, "faults") for _ in range(count)]
    with Spool(spool_path()) as spool:
        for record in records:
            spool.add(record)
    return key, {r["id"] for r in records}


def start_upload() -> subprocess.Popen[str]:
    return subprocess.Popen([*probe_command(), "upload"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for_partial(collector: Collector, key: ProbeKey, proc: subprocess.Popen[str]) -> int:
    """Block until some but not all records are stored; how many."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        count = len(stored_ids(collector, key))
        if 0 < count < RECORDS:
            return count
        assert proc.poll() is None, "the upload finished before anything could be killed"
        time.sleep(0.005)
    raise AssertionError("no partial upload observed")


def assert_exactly_once(collector: Collector, key: ProbeKey, expected: set[str]) -> None:
    ids = stored_ids(collector, key)
    assert len(ids) == len(expected)
    assert set(ids) == expected
    with Spool(spool_path()) as spool:
        assert spool.counts() == {"pending": 0, "rejected": 0}


def test_collector_killed_during_upload(fresh_collector: Collector) -> None:
    key, expected = spool_records(fresh_collector)
    upload = start_upload()
    wait_for_partial(fresh_collector, key, upload)
    fresh_collector.kill()
    time.sleep(0.3)  # the probe meets a dead collector and backs off
    fresh_collector.restart()
    _, err = upload.communicate(timeout=120)
    if upload.returncode != 0:  # it gave up before the restart: the records wait in the spool
        assert "records stay in the spool" in err, err
        again = subprocess.run([*probe_command(), "upload"], capture_output=True, text=True,
                               timeout=120)
        assert again.returncode == 0, again.stderr
    assert_exactly_once(fresh_collector, key, expected)


def test_probe_killed_during_upload(fresh_collector: Collector) -> None:
    key, expected = spool_records(fresh_collector)
    upload = start_upload()
    wait_for_partial(fresh_collector, key, upload)
    upload.kill()
    upload.wait()
    again = subprocess.run([*probe_command(), "upload"], capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0, again.stderr
    assert_exactly_once(fresh_collector, key, expected)


def test_answer_lost_after_commit(fresh_collector: Collector) -> None:
    """The worst moment: the collector stored a batch, the probe died before
    hearing so. The next upload learns they are duplicates and lets them go."""
    key, expected = spool_records(fresh_collector, 700)
    with Spool(spool_path()) as spool, fresh_collector.client() as http:
        http.auth = UploadSigner(key)
        sent = spool.pending(500)
        assert {r["status"] for r in http.post("/api/v1/measurements", json=sent).json()[
            "results"]} == {"accepted"}
    again = subprocess.run([*probe_command(), "upload"], capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0, again.stderr
    assert "200 accepted, 500 duplicate, 0 rejected; 0 left in the spool" in again.stderr
    assert_exactly_once(fresh_collector, key, expected)


def test_a_database_held_by_another_writer_answers_503_and_loses_nothing(tmp_path: Path
                                                                          ) -> None:
    """SQLite locked past the busy timeout by another writer (a `dashboard
    rebuild`, a backup): the upload is answered 503 `database_busy` with
    Retry-After, in the API's error form, having written nothing. Found out
    once: the uploads after it are answered at once (not 30 s each, which
    held every thread and left pages unanswered) and pages still read; sent
    again once the lock is gone, the records are stored once."""
    key = ProbeKey.generate()
    records = [make_record(key, "busy") for _ in range(5)]
    database = tmp_path / "collector" / "collector.sqlite3"
    with Collector(tmp_path / "collector") as collector, collector.client() as http:
        register(http, key)
        http.auth = UploadSigner(key)
        holder = sqlite3.connect(database, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            busy = http.post("/api/v1/measurements", json=records, timeout=90)
            started = time.monotonic()
            quick = http.post("/api/v1/measurements", json=records, timeout=90)
            quick_seconds = time.monotonic() - started
            page = http.get("/api/v1/measurements", params={"limit": 1}, timeout=10)
            command = collector.cli("token", "create")  # an operator's command: one sentence
        finally:
            holder.rollback()
            holder.close()
        for answer in (busy, quick):
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"] == "database_busy"
            assert answer.headers["Retry-After"] == "60"
        assert quick_seconds < 10 and page.status_code == 200
        assert command.returncode == 4 and command.stderr.startswith(
            "voipwatch-collector: error: the database stayed locked by another writer"), \
            command.stderr
        assert stored_ids(collector, key) == []
        again = http.post("/api/v1/measurements", json=records)
        assert [r["status"] for r in again.json()["results"]] == ["accepted"] * 5
        assert sorted(stored_ids(collector, key)) == sorted(r["id"] for r in records)
        assert not database.with_name(database.name + "-locked").exists()  # mark cleared
        log = collector.log()
    assert '"event":"database_busy"' in log.replace(" ", "") and "Traceback" not in log
