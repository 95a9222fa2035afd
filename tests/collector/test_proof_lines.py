"""collector/proof_lines.py against the real databases: an export's proof
written column by column is, byte for byte, the proof written leaf by leaf
(`export_proof.leaf_lines`, whose leaves tests/collector/test_translog.py
holds to what ingest hashed), whatever the rows hold: every control
character, quotes, backslashes, U+2028, astral characters, nulls, an empty
attribution, times before 1970 and before the year 1000, in another zone,
redacted entries at the edges of the ranges read. On SQLite, a range holding
a time before the year 1000 (stored as `0999-...`, which Python writes
`999-...`) is handed to the reference path, and only such a range."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from collector import proof_lines
from collector.db.engine import make_engine
from collector.db.migrate import upgrade
from collector.db.schema import log_redactions, measurements
from collector.export_proof import leaf_lines
from collector.identity import load_or_create
from collector.translog import TransLog
from tests.collector.conftest import BACKENDS, database_url

EVERY_CONTROL = "".join(chr(code) for code in range(1, 0x20))  # PostgreSQL holds no NUL
MOMENTS = [datetime(2016, 1, 5, 9, 0, tzinfo=UTC),
           datetime(2016, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC),
           datetime(999, 12, 31, 1, 2, 3, 4, tzinfo=UTC),
           datetime(2016, 3, 1, 0, 30, tzinfo=timezone(timedelta(hours=5))),
           datetime(1969, 7, 20, 20, 17, 40, 123_456, tzinfo=UTC),
           datetime(2016, 11, 4, 0, 0, tzinfo=UTC)]
VALUES = [("whatsapp", "cellular", "MA", 36903, "control", None),
          ("skype-é", "wifi", None, None, None, "cellular"),
          ("電話📞", "fixed", "DZ", 4_294_967_295, "", "fixed"),
          ('quote"back\\slash\u2028', "cellular", "MA", 0, "local", "unknown"),
          (EVERY_CONTROL, "wifi", "\"\\", None, "collector", None),
          ("viber", "fixed", "MA", -7, None, "mobile\\")]
SIZE, REDACTED = 21, (0, 5, 6, 20)


@pytest.fixture(params=BACKENDS)
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TransLog]:
    engine = make_engine(database_url(request.param, request)
                         or f"sqlite:///{tmp_path}/c.sqlite3")
    upgrade(engine)
    rows = []
    for n in range(SIZE):
        service, link, cc, asn, attribution, upstream = VALUES[n % len(VALUES)]
        moment = MOMENTS[n % len(MOMENTS)]
        rows.append({"id": str(uuid.uuid4()), "key_id": f"k{n}", "service": service,
                     "check_name": "stun", "role": "call", "transport": "udp",
                     "endpoint_host": "203.0.113.7", "endpoint_port": 3478,
                     "verdict": "blocked", "link_type": link, "cc": cc,
                     "asn": asn, "attribution": attribution,
                     "upstream": upstream, "started_at": moment, "received_at": moment,
                     "record": "{}", "record_sha256": f"{n:064x}", "log_index": n})
    with engine.begin() as conn:
        conn.execute(sa.insert(measurements), [row for row in rows
                                               if row["log_index"] not in REDACTED])
        conn.execute(sa.insert(log_redactions), [
            {"log_index": n, "leaf_hash": bytes([n]) * 32, "redacted_at": MOMENTS[0]}
            for n in REDACTED])
    yield TransLog(engine, load_or_create(tmp_path))
    engine.dispose()


@pytest.mark.parametrize("size", [SIZE, 14, 1, 0])
def test_proof_lines_are_the_reference_proof(log: TransLog, size: int,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(proof_lines, "RANGE", 3)  # ranges starting and ending redacted
    assert proof_lines.usable(log.engine)
    handed: list[tuple[int, int]] = []

    def reference(start: int, stop: int) -> Iterator[bytes]:
        handed.append((start, stop))
        return leaf_lines(log, start, stop)

    written = b"".join(proof_lines.lines(log.engine, size, reference))
    assert written == b"".join(leaf_lines(log, 0, size))
    assert len(written.splitlines()) == size
    year_999 = [(start, min(size, start + 3)) for start in (0, 6, 12) if start + 2 < size]
    assert handed == ([] if log.engine.dialect.name == "postgresql" else year_999)
    if size == SIZE:
        assert b'{"index":5,"redacted":"' + (b"05" * 32) + b'"}' in written
        assert b'"started_at":"999-12-31T01:02:03.000004Z"' in written
        assert b'"started_at":"1969-07-20T20:17:40.123456Z"' in written
        assert b'"attribution":"none"' in written


def test_an_entry_redacted_after_its_range_was_read_is_written_once(
        log: TransLog, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ranges are read ahead of the redactions: an entry deleted on request
    in between is written redacted, once (its index twice would fail the
    proof), with the leaf hash the log keeps for it."""
    monkeypatch.setattr(proof_lines, "RANGE", 3)
    engine = log.engine
    start, stop, table = list(proof_lines._ranges(engine, 12))[3]  # entries 9-11
    with engine.begin() as conn:  # what a redaction leaves: the row gone, its hash kept
        conn.execute(sa.delete(measurements).where(measurements.c.log_index == 10))
        conn.execute(sa.insert(log_redactions), [{"log_index": 10, "leaf_hash": b"\x07" * 32,
                                                  "redacted_at": MOMENTS[0]}])
    written = b"".join(proof_lines._range(engine, start, stop, table, None)).splitlines()
    assert [line.split(b",")[0] for line in written] == [
        b'{"index":9', b'{"index":10', b'{"index":11']
    assert written[1] == b'{"index":10,"redacted":"' + b"07" * 32 + b'"}'
    assert written == b"".join(leaf_lines(log, 9, 12)).splitlines()


def test_the_exports_proof_is_written_natively(log: TransLog,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """export_proof.proof takes this path where it can (and the same bytes)."""
    from collector import export_proof
    from collector.store import Filters

    calls: list[int] = []
    native = proof_lines.lines

    def counted(*args: object) -> Iterator[bytes]:
        calls.append(1)
        return native(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(proof_lines, "lines", counted)
    head = {"tree_size": SIZE}
    written = b"".join(export_proof.proof(log, log.key, Filters(), SIZE, "jsonl", head))
    assert calls == [1]
    assert written.split(b"\n", 1)[1] == b"".join(leaf_lines(log, 0, SIZE))


def test_an_api_process_loads_pyarrow_only_to_export() -> None:
    """Every route's module loaded, as `serve` loads them in each API process:
    pyarrow (40-60 MB a process) is not, until an export or its proof runs."""
    import subprocess
    import sys

    code = ("import importlib, sys; from collector.routers import ROUTERS\n"
            "for name in ROUTERS: importlib.import_module(f'collector.routers.{name}')\n"
            "heavy = [m for m in ('pyarrow', 'adbc_driver_manager') if m in sys.modules]\n"
            "sys.exit(f'imported {heavy}' if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
