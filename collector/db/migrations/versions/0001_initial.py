"""Initial schema: probes, enrollment tokens, measurements, rejection counters.

Revision ID: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from collector.db.schema import BigSerial, UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "probes",
        sa.Column("key_id", sa.String(64), primary_key=True),
        sa.Column("public_key", sa.String(64), nullable=False),
        sa.Column("registered_at", UtcDateTime, nullable=False),
        sa.Column("revoked_at", UtcDateTime, nullable=True),
        sa.Column("token_hash", sa.String(64), nullable=True),
        sa.Column("last_seen_at", UtcDateTime, nullable=True),
    )
    op.create_table(
        "enrollment_tokens",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("expires_at", UtcDateTime, nullable=True),
        sa.Column("max_uses", sa.Integer, nullable=True),
        sa.Column("uses", sa.Integer, nullable=False, server_default="0"),
        sa.Column("note", sa.Text, nullable=True),
    )
    op.create_table(
        "measurements",
        sa.Column("seq", BigSerial, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(36), nullable=False, unique=True),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("check_name", sa.String(16), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("transport", sa.String(8), nullable=False),
        sa.Column("endpoint_host", sa.String(255), nullable=False),
        sa.Column("endpoint_port", sa.Integer, nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("blocking", sa.String(32), nullable=True),
        sa.Column("link_type", sa.String(16), nullable=False),
        sa.Column("cc", sa.String(2), nullable=True),
        sa.Column("asn", sa.BigInteger, nullable=True),
        sa.Column("as_org", sa.String(255), nullable=True),
        sa.Column("geoip_source", sa.String(128), nullable=True),
        sa.Column("geoip_date", sa.String(32), nullable=True),
        sa.Column("probe_ip", sa.String(45), nullable=True),
        sa.Column("started_at", UtcDateTime, nullable=False),
        sa.Column("received_at", UtcDateTime, nullable=False),
        sa.Column("record", sa.Text, nullable=False),
    )
    op.create_index("measurements_service_started", "measurements", ["service", "started_at"])
    op.create_index("measurements_started", "measurements", ["started_at"])
    op.create_index("measurements_verdict", "measurements", ["verdict", "started_at"])
    op.create_index("measurements_network", "measurements", ["cc", "asn", "link_type"])
    op.create_index("measurements_key", "measurements", ["key_id"])
    op.create_table(
        "rejections",
        sa.Column("reason", sa.String(32), primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in ("rejections", "measurements", "enrollment_tokens", "probes"):
        op.drop_table(table)
