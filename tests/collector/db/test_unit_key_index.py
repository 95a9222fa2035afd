"""Migration `unit_key_index`: `dash_unit`'s index of a series' rows is
(series, span, key, start), key columns only, on both backends; every rollup
row is kept, ingest then rolls up exactly as on a store created at the newest
revision, a timeline reads a revoked key's units through the index (SQLite:
not every daily unit), and a downgrade gives back the former index."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from collector.dashboard.cells import series_day_counts
from collector.db.engine import make_engine
from collector.db.migrate import alembic_config, upgrade
from collector.db.schema import probes
from tests.collector.conftest import database_url
from tests.collector.dashboard.test_spans import _rows
from tests.collector.db.rollups import roll_up, rollup_rows

FORMER = {"sqlite": {"dash_unit_series_days": ["series_id", "span", "start", "key_id", "u_open",
                                               "u_blocked", "u_throttled", "u_inconclusive"]},
          "postgresql": {"dash_unit_series": ["series_id", "span", "start", "key_id"]}}


def _indexes(engine: sa.Engine) -> dict[str, list[str]]:
    with engine.connect() as conn:
        return {index["name"]: list(index["column_names"])
                for index in sa.inspect(conn).get_indexes("dash_unit")}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_rollups_survive_the_new_index_and_go_on(backend: str, tmp_path: Path,
                                                 request: pytest.FixtureRequest) -> None:
    def store(name: str) -> sa.Engine:
        return make_engine(database_url(backend, request) or f"sqlite:///{tmp_path}/{name}")

    rows = _rows(random.Random(17))
    migrated = store("migrated.sqlite3")
    command.upgrade(alembic_config(migrated), "hot_rollups")
    roll_up(migrated, rows[:2000])
    before = rollup_rows(migrated)
    assert all(before.values())
    assert _indexes(migrated) == FORMER[backend]

    upgrade(migrated)
    assert rollup_rows(migrated) == before
    assert _indexes(migrated) == {"dash_unit_series": ["series_id", "span", "key_id", "start"]}

    roll_up(migrated, rows[2000:])  # the same units and days, further
    fresh = store("fresh.sqlite3")
    upgrade(fresh)
    roll_up(fresh, rows[:2000], rows[2000:])
    after = rollup_rows(migrated)
    assert after == rollup_rows(fresh) and after != before

    command.downgrade(alembic_config(migrated), "hot_rollups")
    assert rollup_rows(migrated) == after
    assert _indexes(migrated) == FORMER[backend]
    migrated.dispose()
    fresh.dispose()


def test_a_timeline_reads_only_the_revoked_keys_units(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/c.sqlite3")
    upgrade(engine)
    rows = _rows(random.Random(3))
    roll_up(engine, rows)
    revoked = rows[0]["key_id"]
    with engine.begin() as conn:
        conn.execute(sa.insert(probes), [
            {"key_id": key, "public_key": key[:44], "registered_at": dt.datetime.now(dt.UTC),
             "revoked_at": dt.datetime.now(dt.UTC) if key == revoked else None}
            for key in sorted({row["key_id"] for row in rows})])
    statements: list[tuple[str, Any]] = []

    def seen(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        statements.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", seen)
    with engine.connect() as conn:
        series = list(conn.exec_driver_sql("SELECT id FROM dash_series").scalars())
        counts = series_day_counts(conn, series)
    sa.event.remove(engine, "before_cursor_execute", seen)
    assert counts
    [(statement, parameters)] = [(s, p) for s, p in statements if "dash_unit" in s]
    with engine.connect() as conn:
        plan = " ".join(str(row[-1]) for row in conn.exec_driver_sql(
            f"EXPLAIN QUERY PLAN {statement}", parameters))
    assert "USING INDEX dash_unit_series (series_id=? AND span=? AND key_id=?)" in plan, plan
    engine.dispose()
