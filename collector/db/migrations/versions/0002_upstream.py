"""The link's upstream kind as columns of its own (issue 18): `upstream`
(cellular | fixed | unknown), `upstream_source`, `upstream_confidence`, copied
from each record's signed `network` at ingest, for the cellular/fixed split's
filters, exports and dashboard without parsing the JSON per row. Records
stored before are filled from their JSON here (NULL when the probe did not
say: an earlier probe).

Revision ID: upstream
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "upstream"
down_revision = "0001"
branch_labels = None
depends_on = None

FIELDS = ("upstream", "upstream_source", "upstream_confidence")


def upgrade() -> None:
    with op.batch_alter_table("measurements") as batch:
        for name in FIELDS:
            batch.add_column(sa.Column(name, sa.String(16), nullable=True))
    postgresql = op.get_bind().dialect.name == "postgresql"
    for name in FIELDS:
        value = (f"CAST(record AS jsonb) #>> '{{network,{name}}}'" if postgresql
                 else f"json_extract(record, '$.network.{name}')")
        op.execute(f"UPDATE measurements SET {name} = {value}")


def downgrade() -> None:
    with op.batch_alter_table("measurements") as batch:
        for name in FIELDS:
            batch.drop_column(name)
