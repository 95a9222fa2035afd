"""`dash_unit`'s index of a series' rows: (series, span, key, start), key
columns only, on both backends.

SQLite's held the unit counters too (`dash_unit_series_days`, covering, so
that a timeline read it without the table), so every update of a unit's
counters moved the row's entry in it; and it is kept in series order, where a
series' day, week, month and year are four places. Once a series has a few
pages of history, each series a batch of records touched was four more pages
written: after 160,000 records (a year of dates), batches of 500 records of
one day wrote 0.43 pages a record to it, of 2.20 in all (0.04 at an empty
store). With key columns only an update changes no entry: 0.10 pages a record
(the new units), 1.97 in all. Side by side over HTTP (8 paired rounds): ingest
1.03x at an empty store, 1.05x after 160,000 records; at 1,000,000 records
the matrix and timelines as fast or faster (p95 over two years 31-34 ms
against 36-51); 1.4 s to migrate there.

The key before the start day: what reads this index is the timelines taking
out revoked keys' units, a handful of keys in the series asked for. Ordered
(series, span, start, key), SQLite read every daily unit of those series (or,
as it chose, every daily unit) to find them: with one key revoked, a cell's
timeline took 65 ms instead of 3 at 10,000,000 records, and the cost grows with
probes times days. The timelines have read `dash_series_day` since
`clustered_rollups`; the fleet page's newest day per network now does too.

Revision ID: unit_key_index
"""

from __future__ import annotations

from alembic import op

revision = "unit_key_index"
down_revision = "hot_rollups"
branch_labels = None
depends_on = None

INDEX = "CREATE INDEX dash_unit_series ON dash_unit (series_id, span, key_id, start)"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP INDEX dash_unit_series_days")
    else:
        op.execute("DROP INDEX dash_unit_series")
    op.execute(INDEX)


def downgrade() -> None:
    op.execute("DROP INDEX dash_unit_series")
    if op.get_bind().dialect.name == "sqlite":
        op.execute("CREATE INDEX dash_unit_series_days ON dash_unit (series_id, span, start, "
                   "key_id, u_open, u_blocked, u_throttled, u_inconclusive)")
    else:
        op.execute("CREATE INDEX dash_unit_series ON dash_unit (series_id, span, start, key_id)")
