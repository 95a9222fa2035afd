"""Queries at scale (issue 17): weekly and yearly rollups for the dashboard's
periods and units per series and day for the timelines (both rolled up here
from the daily rows), covering indexes for the matrix and the timelines, and
an index per selective filter of `GET /api/v1/measurements` that keeps its
rows in `seq` order (keyset pages).

Revision ID: query_scale
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "query_scale"
down_revision = "limits"
branch_labels = None
depends_on = None

UNIT_SUMS = ("u_open", "u_blocked", "u_throttled", "u_inconclusive", "n", "n_signed",
             "n_upstream")
PAGE_INDEXES = (("measurements_service_seq", ["service", "seq"]),
                ("measurements_verdict_seq", ["verdict", "seq"]),
                ("measurements_asn_seq", ["asn", "seq"]),
                ("measurements_key_seq", ["key_id", "seq"]))


def _week(column: str) -> str:
    """The Monday of `column`'s week, in the dialect's SQL."""
    if op.get_bind().dialect.name == "postgresql":
        return f"CAST(date_trunc('week', {column}) AS date)"
    return f"date({column}, '-6 days', 'weekday 1')"


def _year(column: str) -> str:
    if op.get_bind().dialect.name == "postgresql":
        return f"CAST(date_trunc('year', {column}) AS date)"
    return f"strftime('%Y-01-01', {column})"


def upgrade() -> None:
    week = _week("start")
    sums = ", ".join(f"SUM({c})" for c in UNIT_SUMS)
    # a database rolled up by migration `dashboard` with this code has them already
    op.execute("DELETE FROM dash_method WHERE span IN ('w', 'y')")
    op.execute("DELETE FROM dash_unit WHERE span IN ('w', 'y')")
    for span, start in (("w", week), ("y", _year("start"))):
        op.execute(f"INSERT INTO dash_unit (span, start, series_id, key_id, "
                   f"{', '.join(UNIT_SUMS)}) SELECT '{span}', {start}, series_id, key_id, "
                   f"{sums} FROM dash_unit WHERE span = 'd' GROUP BY {start}, series_id, key_id")
        op.execute(f"INSERT INTO dash_method (span, start, series_id, key_id, blocking, n) "
                   f"SELECT '{span}', {start}, series_id, key_id, blocking, SUM(n) "
                   f"FROM dash_method WHERE span = 'd' "
                   f"GROUP BY {start}, series_id, key_id, blocking")
    op.create_table(
        "dash_series_day",
        sa.Column("series_id", sa.BigInteger, primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("u_open", sa.Integer, nullable=False),
        sa.Column("u_blocked", sa.Integer, nullable=False),
        sa.Column("u_throttled", sa.Integer, nullable=False),
        sa.Column("u_inconclusive", sa.Integer, nullable=False),
    )
    verdicts = ("u_open", "u_blocked", "u_throttled", "u_inconclusive")
    op.execute(f"INSERT INTO dash_series_day (series_id, day, {', '.join(verdicts)}) "
               f"SELECT series_id, start, {', '.join(f'SUM({c})' for c in verdicts)} "
               "FROM dash_unit WHERE span = 'd' GROUP BY series_id, start")
    op.drop_index("dash_unit_series", table_name="dash_unit")
    op.create_index("dash_unit_series_days", "dash_unit",
                    ["series_id", "span", "start", "key_id", "u_open", "u_blocked",
                     "u_throttled", "u_inconclusive"])
    op.create_index("dash_unit_period", "dash_unit",
                    ["span", "start", "series_id", "key_id", *UNIT_SUMS])
    op.drop_index("measurements_key", table_name="measurements")
    for name, columns in PAGE_INDEXES:
        op.create_index(name, "measurements", columns)


def downgrade() -> None:
    for name, _ in PAGE_INDEXES:
        op.drop_index(name, table_name="measurements")
    op.create_index("measurements_key", "measurements", ["key_id"])
    op.drop_index("dash_unit_period", table_name="dash_unit")
    op.drop_index("dash_unit_series_days", table_name="dash_unit")
    op.create_index("dash_unit_series", "dash_unit", ["series_id", "span", "start"])
    op.drop_table("dash_series_day")
    op.execute("DELETE FROM dash_method WHERE span IN ('w', 'y')")
    op.execute("DELETE FROM dash_unit WHERE span IN ('w', 'y')")
