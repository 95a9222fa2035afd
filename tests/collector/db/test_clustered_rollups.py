"""Migration `clustered_rollups` (SQLite): the dashboard's rollups are rebuilt
in key order with every row kept, ingest then rolls up exactly as on a store
created at the newest revision, and a downgrade gives back the former tables."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command

from collector.db.engine import make_engine
from collector.db.migrate import alembic_config, upgrade
from tests.collector.dashboard.test_spans import _rows
from tests.collector.db.rollups import roll_up

TABLES = ("dash_endpoint_day", "dash_unit", "dash_method", "dash_series_day", "dash_series")


def _contents(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        return {table: sorted(tuple(row) for row in conn.exec_driver_sql(
            f"SELECT * FROM {table}")) for table in TABLES}


def _layout(engine: sa.Engine) -> tuple[set[str], set[str]]:
    """The tables stored without a rowid, and dash_unit's indexes."""
    with engine.connect() as conn:
        clustered = {name for (name,) in conn.exec_driver_sql(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND "
            "sql LIKE '%WITHOUT ROWID%' AND name LIKE 'dash_%'")}
        indexes = {name for (name,) in conn.exec_driver_sql(
            "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'dash_unit' "
            "AND sql IS NOT NULL")}
    return clustered, indexes


def test_rollups_survive_the_rebuild_and_go_on(tmp_path: Path) -> None:
    rows = _rows(random.Random(11))
    migrated = make_engine(f"sqlite:///{tmp_path}/migrated.sqlite3")
    command.upgrade(alembic_config(migrated), "query_scale")
    roll_up(migrated, rows[:2000])
    before = _contents(migrated)
    assert all(before[table] for table in TABLES)
    command.upgrade(alembic_config(migrated), "clustered_rollups")
    assert _contents(migrated) == before
    clustered, indexes = _layout(migrated)
    assert clustered == {"dash_endpoint_day", "dash_unit", "dash_method", "dash_series_day"}
    assert indexes == {"dash_unit_series_days"}

    roll_up(migrated, rows[2000:])  # the same units and days rolled up further
    fresh = make_engine(f"sqlite:///{tmp_path}/fresh.sqlite3")
    upgrade(fresh)
    roll_up(fresh, rows[:2000], rows[2000:])
    after = _contents(migrated)
    assert after == _contents(fresh) and after != before

    command.downgrade(alembic_config(migrated), "query_scale")
    assert _contents(migrated) == after
    clustered, indexes = _layout(migrated)
    assert clustered == set()
    assert indexes == {"dash_unit_series_days", "dash_unit_period"}
    migrated.dispose()
    fresh.dispose()
