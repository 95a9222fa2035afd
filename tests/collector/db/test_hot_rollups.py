"""Migration `hot_rollups` (PostgreSQL): rolling up again updates `dash_unit`'s
rows in place (HOT: no new index entry), which the former layout never did;
the rollups are what a store created at the newest revision (or left at the
former one) holds, and a downgrade restores the covering indexes."""

from __future__ import annotations

import random
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from collector.dashboard import rollup
from collector.db.engine import make_engine
from collector.db.migrate import alembic_config, upgrade
from tests.collector.conftest import database_url
from tests.collector.dashboard.test_spans import _rows
from tests.collector.db.rollups import roll_up, rollup_rows

UPDATED = ("dash_unit", "dash_endpoint_day", "dash_series_day", "dash_method",
           "dash_key_version")


def _indexes(conn: sa.Connection) -> set[str]:
    return {name for (name,) in conn.exec_driver_sql(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'dash_unit'")}


def _fillfactors(conn: sa.Connection) -> dict[str, Any]:
    return {name: options for name, options in conn.exec_driver_sql(
        "SELECT relname, reloptions FROM pg_class WHERE relname = ANY(%(names)s)",
        {"names": list(UPDATED)})}


def _units(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    return rollup_rows(engine, ("dash_unit",))


def _hot_updates(engine: sa.Engine, rows: list[dict[str, Any]], chunk: int = 100
                 ) -> tuple[int, int]:
    """Roll `rows` up in transactions of `chunk` rows, as ingest batches do: how
    many of `dash_unit`'s row updates were HOT, of how many."""
    hot = updated = 0
    query = ("SELECT pg_stat_get_xact_tuples_hot_updated('dash_unit'::regclass), "
             "pg_stat_get_xact_tuples_updated('dash_unit'::regclass)")
    for first in range(0, len(rows), chunk):
        with engine.begin() as conn:
            before = conn.exec_driver_sql(query).one()
            rollup._SERIES_DAY.clear()
            rollup.apply(conn, rows[first:first + chunk])
            after = conn.exec_driver_sql(query).one()
        hot, updated = hot + after[0] - before[0], updated + after[1] - before[1]
    return hot, updated


def test_rollups_are_updated_in_place(request: pytest.FixtureRequest) -> None:
    rows = _rows(random.Random(5))
    old = make_engine(database_url("postgresql", request))  # the former layout
    command.upgrade(alembic_config(old), "clustered_rollups")
    engine = make_engine(database_url("postgresql", request))
    command.upgrade(alembic_config(engine), "clustered_rollups")
    for store in (old, engine):
        roll_up(store, rows[:1500])
    with engine.connect() as conn:
        assert _indexes(conn) == {"dash_unit_pkey", "dash_unit_series_days",
                                  "dash_unit_period"}
    upgrade(engine)
    with engine.connect() as conn:
        assert _indexes(conn) == {"dash_unit_pkey", "dash_unit_series"}
        assert _fillfactors(conn) == {table: ["fillfactor=70"] for table in UPDATED}
    # rows written before the migration sit in full pages: rewritten (VACUUM FULL),
    # they show what pages written from now on do
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM FULL dash_unit")

    # the same units rolled up further: only their counters move
    hot, updated = _hot_updates(old, rows[1500:])
    assert updated > 500 and hot == 0  # counters in the indexes: never in place
    hot, updated = _hot_updates(engine, rows[1500:])
    assert updated > 500 and hot >= 0.9 * updated  # the rest: a page without room

    fresh = make_engine(database_url("postgresql", request))
    upgrade(fresh)
    roll_up(fresh, rows[:1500], rows[1500:])
    assert _units(engine) == _units(fresh) == _units(old)

    command.downgrade(alembic_config(engine), "clustered_rollups")
    with engine.connect() as conn:
        assert _indexes(conn) == {"dash_unit_pkey", "dash_unit_series_days",
                                  "dash_unit_period"}
        assert _fillfactors(conn) == {table: None for table in UPDATED}
    assert _units(engine) == _units(fresh)
    for store in (old, engine, fresh):
        store.dispose()
