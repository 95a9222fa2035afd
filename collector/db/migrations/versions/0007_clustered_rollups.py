"""SQLite: the dashboard's rollups stored in their key's order (WITHOUT ROWID).

Each upsert of a rollup row wrote the rowid table, the key's index and, for
`dash_unit`, two covering indexes. Stored in key order the row is its key's
index, and `dash_unit` in (span, start, series, key) order is what its
`dash_unit_period` index held: one b-tree fewer for every table and two for
`dash_unit`. After 160,000 records (a year of dates) the write section took
96 µs a record instead of 105 (bench/_ingest_stages.py). PostgreSQL keeps
heap tables and its indexes: nothing changes there.

The tables are copied once, at `serve` start, in one transaction: 584,000
rollup rows (a store of 300,000 records) took 2 s here, so ten million
records (about twenty million rollup rows) take a minute or two.

Revision ID: clustered_rollups
"""

from __future__ import annotations

from alembic import op

revision = "clustered_rollups"
down_revision = "query_scale"
branch_labels = None
depends_on = None

TABLES = ("dash_endpoint_day", "dash_unit", "dash_method", "dash_series_day")
PERIOD_INDEX = ("CREATE INDEX dash_unit_period ON dash_unit (span, start, series_id, key_id, "
                "u_open, u_blocked, u_throttled, u_inconclusive, n, n_signed, n_upstream)")


def _rebuild(table: str, clustered: bool) -> None:
    """Copy `table` into one created by its own DDL, with or without a rowid;
    its indexes are recreated as they were."""
    conn = op.get_bind()
    ddl = conn.exec_driver_sql("SELECT sql FROM sqlite_schema WHERE type = 'table' AND "
                               "name = ?", (table,)).scalar_one()
    indexes = [row[0] for row in conn.exec_driver_sql(
        "SELECT sql FROM sqlite_schema WHERE type = 'index' AND tbl_name = ? AND "
        "sql IS NOT NULL", (table,)) if "dash_unit_period" not in row[0]]
    body = ddl.split("(", 1)[1].rstrip()
    body = body.removesuffix("WITHOUT ROWID").rstrip()
    op.execute(f"CREATE TABLE {table}_rebuilt ({body}{' WITHOUT ROWID' if clustered else ''}")
    op.execute(f"INSERT INTO {table}_rebuilt SELECT * FROM {table}")
    op.execute(f"DROP TABLE {table}")
    op.execute(f"ALTER TABLE {table}_rebuilt RENAME TO {table}")
    for index in indexes:
        op.execute(index)


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        _rebuild(table, clustered=True)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        _rebuild(table, clustered=False)
    op.execute(PERIOD_INDEX)
