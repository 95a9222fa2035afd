"""The tables (SQLAlchemy Core). Changes go through a new Alembic migration in
`collector/db/migrations/versions/`, never by editing an old one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

metadata = sa.MetaData()

# an autoincrementing 64-bit key; SQLite only autoincrements an INTEGER PRIMARY KEY
BigSerial = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """Aware UTC datetimes in and out. PostgreSQL stores `timestamptz`; SQLite
    stores naive UTC text, which sorts and compares correctly."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


probes = sa.Table(
    "probes", metadata,
    sa.Column("key_id", sa.String(64), primary_key=True),
    sa.Column("public_key", sa.String(64), nullable=False),
    sa.Column("registered_at", UtcDateTime, nullable=False),
    sa.Column("revoked_at", UtcDateTime, nullable=True),
    sa.Column("token_hash", sa.String(64), nullable=True),
    sa.Column("last_seen_at", UtcDateTime, nullable=True),
)

enrollment_tokens = sa.Table(
    "enrollment_tokens", metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=True),
    sa.Column("max_uses", sa.Integer, nullable=True),
    sa.Column("uses", sa.Integer, nullable=False, server_default="0"),
    sa.Column("note", sa.Text, nullable=True),
)

measurements = sa.Table(
    "measurements", metadata,
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
    # the record's network.upstream* (docs/linktype.md); NULL from earlier probes
    sa.Column("upstream", sa.String(16), nullable=True),
    sa.Column("upstream_source", sa.String(16), nullable=True),
    sa.Column("upstream_confidence", sa.String(16), nullable=True),
    sa.Column("cc", sa.String(2), nullable=True),
    sa.Column("asn", sa.BigInteger, nullable=True),
    sa.Column("as_org", sa.String(255), nullable=True),
    sa.Column("geoip_source", sa.String(128), nullable=True),
    sa.Column("geoip_date", sa.String(32), nullable=True),
    sa.Column("probe_ip", sa.String(45), nullable=True),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("received_at", UtcDateTime, nullable=False),
    # the signed record exactly as the probe sent it: re-verifiable forever
    sa.Column("record", sa.Text, nullable=False),
    sa.Index("measurements_service_started", "service", "started_at"),
    sa.Index("measurements_started", "started_at"),
    sa.Index("measurements_verdict", "verdict", "started_at"),
    sa.Index("measurements_network", "cc", "asn", "link_type"),
    sa.Index("measurements_key", "key_id"),
)

# rejected submissions, counted by reason (closed set, collector.ingest.Reason)
rejections = sa.Table(
    "rejections", metadata,
    sa.Column("reason", sa.String(32), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
)

# Limits that must hold across worker processes (collector/limits.py): fixed-window
# counters (registrations per address, control targets and ingest quota per key) ...
rate_counters = sa.Table(
    "rate_counters", metadata,
    sa.Column("scope", sa.String(32), primary_key=True),
    sa.Column("subject", sa.String(160), primary_key=True),
    sa.Column("window", sa.BigInteger, primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
)

# ... and slots (the test helper's checks): held, or waited for in a fair queue
leases = sa.Table(
    "leases", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("key_id", sa.String(64), nullable=False),
    sa.Column("held", sa.Boolean, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),  # Unix time
    sa.Index("leases_kind", "kind", "held", "key_id"),
)
