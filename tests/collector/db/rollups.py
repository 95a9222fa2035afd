"""Helpers for the migration tests of the dashboard's rollups: roll rows up as
ingest does, and read what the rollup tables hold, comparable across stores."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from collector.dashboard import rollup

ROLLUPS = ("dash_endpoint_day", "dash_unit", "dash_method", "dash_series_day")
SERIES = "SELECT id, service, role, cc, operator, link FROM dash_series"


def roll_up(engine: sa.Engine, *batches: list[dict[str, Any]]) -> None:
    """Each batch rolled up in turn, in one transaction."""
    with engine.begin() as conn:
        rollup._SERIES_DAY.clear()  # a database of the same URL may be a new one
        for batch in batches:
            rollup.apply(conn, batch)


def rollup_rows(engine: sa.Engine, tables: tuple[str, ...] = ROLLUPS
                ) -> dict[str, list[tuple[Any, ...]]]:
    """Each table's rows, sorted, the series named rather than numbered (ids
    differ between stores)."""
    with engine.connect() as conn:
        names = {row[0]: tuple(row[1:]) for row in conn.exec_driver_sql(SERIES)}
        return {table: sorted((names[row.series_id], *(value for name, value in
                                                       row._mapping.items()
                                                       if name != "series_id"))
                              for row in conn.execute(sa.text(f"SELECT * FROM {table}")))
                for table in tables}
