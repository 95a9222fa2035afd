"""Limits shared by every worker: rate counters and leases (collector/limits.py).

Revision ID: limits
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "limits"
down_revision = "evidence"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_counters",
        sa.Column("scope", sa.String(32), primary_key=True),
        sa.Column("subject", sa.String(160), primary_key=True),
        sa.Column("window", sa.BigInteger, primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "leases",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("held", sa.Boolean, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_index("leases_kind", "leases", ["kind", "held", "key_id"])


def downgrade() -> None:
    op.drop_index("leases_kind", table_name="leases")
    op.drop_table("leases")
    op.drop_table("rate_counters")
