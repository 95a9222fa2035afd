"""Evidence (issue 14): record hashes, the transparency log, late records, the
signed attribution apart from the upload address's look-up.

Existing rows keep their look-up as the upload address's (`upload_*`) and are
filed under it (`attribution` `collector`, or `none` when it found nothing);
the collector appends them to the log at its next start (collector/translog.py).

Revision ID: evidence
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from collector.db.schema import UtcDateTime

revision = "evidence"
down_revision = "dashboard"
branch_labels = None
depends_on = None

def _columns() -> tuple[sa.Column[object], ...]:
    return (
        sa.Column("record_sha256", sa.String(64), nullable=True),
        sa.Column("log_index", sa.BigInteger, nullable=True),
        sa.Column("late_seconds", sa.BigInteger, nullable=True),
        sa.Column("attribution", sa.String(16), nullable=True),
        sa.Column("upload_cc", sa.String(2), nullable=True),
        sa.Column("upload_asn", sa.BigInteger, nullable=True),
        sa.Column("upload_as_org", sa.String(255), nullable=True),
        sa.Column("attribution_mismatch", sa.Boolean, nullable=True),
    )


def upgrade() -> None:
    with op.batch_alter_table("measurements") as batch:
        for column in _columns():
            batch.add_column(column)
    op.create_index("measurements_log_index", "measurements", ["log_index"], unique=True)
    op.execute("UPDATE measurements SET upload_cc = cc, upload_asn = asn, "
               "upload_as_org = as_org, attribution = CASE WHEN cc IS NULL AND asn IS NULL "
               "THEN 'none' ELSE 'collector' END")
    state = op.create_table(
        "log_state",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("tree_size", sa.BigInteger, nullable=False),
        sa.Column("frontier", sa.LargeBinary, nullable=False),
    )
    op.bulk_insert(state, [{"id": 1, "tree_size": 0, "frontier": b""}])  # the empty log
    op.create_table(
        "log_nodes",
        sa.Column("level", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary, nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "log_redactions",
        sa.Column("log_index", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("leaf_hash", sa.LargeBinary, nullable=False),
        sa.Column("redacted_at", UtcDateTime, nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
    )
    op.create_table(
        "log_heads",
        sa.Column("tree_size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("root_hash", sa.String(64), nullable=False),
        sa.Column("signed_at", UtcDateTime, nullable=False),
        sa.Column("head", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for table in ("log_heads", "log_redactions", "log_nodes", "log_state"):
        op.drop_table(table)
    op.drop_index("measurements_log_index", "measurements")
    with op.batch_alter_table("measurements") as batch:
        for column in _columns():
            batch.drop_column(column.name)
