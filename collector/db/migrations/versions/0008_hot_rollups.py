"""PostgreSQL: the dashboard's rollups updated in place (HOT updates).

Every upsert of a `dash_unit` row changes only its counters, but its two
covering indexes held them, so no update was HOT: each added an entry to
every index, and autovacuum frees old entries for reuse without shrinking the
index. After 160,000 records over a year then 100,000 of one day (376,990
updates, none HOT), the table and its indexes took 196 MiB, 73 MiB once
rewritten. Now its only indexes are on key columns (the matrix reads the
primary key, (span, start, series, key); the timelines `dash_unit_series`) and
the rollup tables that ingest updates leave 30 % of each page free, so an
update puts the row's new version in the same page and touches no index.
Measured: 71 MiB instead of 159 for the table and its indexes at about
400,000 records, ingest unchanged (1.01x at an empty store, 0.99x after
160,000 records, side by side), matrix and timelines no slower at 1,000,000
records (p95 in-process 24-28 ms against 40 for two years).

Existing pages keep their fill until rewritten (`VACUUM FULL`, or as rows
move). SQLite: nothing changes (its tables are stored in key order).

Revision ID: hot_rollups
"""

from __future__ import annotations

from alembic import op

revision = "hot_rollups"
down_revision = "clustered_rollups"
branch_labels = None
depends_on = None

UPDATED = ("dash_unit", "dash_endpoint_day", "dash_series_day", "dash_method",
           "dash_key_version")
COUNTERS = "u_open, u_blocked, u_throttled, u_inconclusive"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS dash_unit_period")
    op.execute("DROP INDEX IF EXISTS dash_unit_series_days")
    op.execute("CREATE INDEX dash_unit_series ON dash_unit (series_id, span, start, key_id)")
    for table in UPDATED:
        op.execute(f"ALTER TABLE {table} SET (fillfactor = 70)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in UPDATED:
        op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
    op.execute("DROP INDEX dash_unit_series")
    op.execute(f"CREATE INDEX dash_unit_series_days ON dash_unit (series_id, span, start, "
               f"key_id, {COUNTERS})")
    op.execute(f"CREATE INDEX dash_unit_period ON dash_unit (span, start, series_id, key_id, "
               f"{COUNTERS}, n, n_signed, n_upstream)")
