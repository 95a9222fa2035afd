"""The dashboard: rollups maintained at ingest, detected changes, webhook
subscriptions and deliveries, operator tokens; existing measurements are rolled
up here once (collector/dashboard/rollup.py).

Revision ID: dashboard
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from collector.db.schema import BigSerial, UtcDateTime

revision = "dashboard"
down_revision = "upstream"
branch_labels = None
depends_on = None

TABLES = ("dash_series", "dash_endpoint_day", "dash_unit", "dash_method", "dash_key_version",
          "dash_change", "dash_subscription", "dash_delivery", "operator_tokens")


def upgrade() -> None:
    op.create_table(
        "dash_series",
        sa.Column("id", BigSerial, primary_key=True, autoincrement=True),
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("cc", sa.String(2), nullable=False),
        sa.Column("operator", sa.String(80), nullable=False),
        sa.Column("link", sa.String(16), nullable=False),
        sa.Column("as_org", sa.String(255), nullable=True),
        sa.Column("dirty", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.UniqueConstraint("service", "role", "cc", "operator", "link",
                            name="dash_series_identity"),
    )
    op.create_table(
        "dash_endpoint_day",
        sa.Column("series_id", sa.BigInteger, primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("key_id", sa.String(64), primary_key=True),
        sa.Column("endpoint", sa.String(16), primary_key=True),
        sa.Column("n_open", sa.Integer, nullable=False),
        sa.Column("n_blocked", sa.Integer, nullable=False),
        sa.Column("n_throttled", sa.Integer, nullable=False),
        sa.Column("n_inconclusive", sa.Integer, nullable=False),
    )
    op.create_table(
        "dash_unit",
        sa.Column("span", sa.String(1), primary_key=True),
        sa.Column("start", sa.Date, primary_key=True),
        sa.Column("series_id", sa.BigInteger, primary_key=True),
        sa.Column("key_id", sa.String(64), primary_key=True),
        sa.Column("u_open", sa.Integer, nullable=False),
        sa.Column("u_blocked", sa.Integer, nullable=False),
        sa.Column("u_throttled", sa.Integer, nullable=False),
        sa.Column("u_inconclusive", sa.Integer, nullable=False),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("n_signed", sa.Integer, nullable=False),
        sa.Column("n_upstream", sa.Integer, nullable=False),
    )
    op.create_table(
        "dash_method",
        sa.Column("span", sa.String(1), primary_key=True),
        sa.Column("start", sa.Date, primary_key=True),
        sa.Column("series_id", sa.BigInteger, primary_key=True),
        sa.Column("key_id", sa.String(64), primary_key=True),
        sa.Column("blocking", sa.String(32), primary_key=True),
        sa.Column("n", sa.Integer, nullable=False),
    )
    op.create_table(
        "dash_key_version",
        sa.Column("key_id", sa.String(64), primary_key=True),
        sa.Column("version", sa.String(64), primary_key=True),
        sa.Column("first_at", UtcDateTime, nullable=False),
        sa.Column("last_at", UtcDateTime, nullable=False),
        sa.Column("n", sa.BigInteger, nullable=False),
        sa.Column("n_ahead", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "dash_change",
        sa.Column("id", BigSerial, primary_key=True, autoincrement=True),
        sa.Column("series_id", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("at", sa.Date, nullable=False),
        sa.Column("after", sa.Date, nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("probes", sa.Integer, nullable=False),
        sa.Column("detected_at", UtcDateTime, nullable=False),
        sa.UniqueConstraint("series_id", "kind", "at", name="dash_change_identity"),
    )
    op.create_table(
        "dash_subscription",
        sa.Column("id", BigSerial, primary_key=True, autoincrement=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("secret", sa.String(64), nullable=False),
        sa.Column("cc", sa.String(2), nullable=True),
        sa.Column("asn", sa.BigInteger, nullable=True),
        sa.Column("service", sa.String(64), nullable=True),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    )
    op.create_table(
        "dash_delivery",
        sa.Column("subscription_id", sa.BigInteger, primary_key=True),
        sa.Column("change_id", sa.BigInteger, primary_key=True),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_at", UtcDateTime, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
    )
    op.create_table(
        "operator_tokens",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("revoked_at", UtcDateTime, nullable=True),
    )
    op.create_index("dash_unit_series", "dash_unit", ["series_id", "span", "start"])
    op.create_index("dash_delivery_due", "dash_delivery", ["status", "next_at"])
    from collector.dashboard.rollup import rebuild_on

    rebuild_on(op.get_bind())


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)
