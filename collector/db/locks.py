"""The one order in which PostgreSQL writers lock rows, so that no two
transactions ever wait for each other in a cycle (a deadlock aborts one of
them: an upload answered 500, a revocation refused).

An ingest transaction takes, in this order: its series' `dash_series` rows
(in id order), the rollup rows of those series (upserted in key order), its
keys' `probes` rows, its quota counter, the rejections' counters, and last the
transparency log's `log_state` row, held to its commit (collector/store.py).
Every other writer of those rows keeps the same order: `dash_series` rows are
locked first, in id order, by `lock_series` (or skipped while locked, by the
change detector's claim). SQLite runs one writer at a time: nothing to do."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from collector.db.schema import dash_series


def lock_series(conn: sa.Connection, ids: Iterable[int] | None = None) -> None:
    """Lock these series' rows (None: every series) in id order, until the
    transaction ends; on SQLite, nothing."""
    if conn.dialect.name != "postgresql":
        return
    query = sa.select(dash_series.c.id)
    if ids is not None:
        wanted = sorted(set(ids))
        if not wanted:
            return
        query = query.where(dash_series.c.id.in_(wanted))
    conn.execute(query.order_by(dash_series.c.id).with_for_update())
