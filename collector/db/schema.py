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


def utc_of(raw: str | datetime) -> datetime:
    """A UtcDateTime column's value as the driver gives it when read without
    its type (`type_coerce(column, String)`, which spares every row a datetime
    where the text does): SQLite's naive UTC text, PostgreSQL's datetime."""
    if isinstance(raw, str):
        return datetime.fromisoformat(raw).replace(tzinfo=UTC)
    return raw.astimezone(UTC)


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
    # evidence (docs/evidence.md): the record's hash and its place in the
    # transparency log (its leaf is made of this row's columns, which never change:
    # collector/translog.py); `cc`/`asn`/`as_org` above are what the record is filed
    # under: its signed attribution (`attribution` control|local), else the upload
    # address's look-up (`collector`), which is also kept apart in `upload_*`
    sa.Column("record_sha256", sa.String(64), nullable=True),
    sa.Column("log_index", sa.BigInteger, nullable=True),
    sa.Column("late_seconds", sa.BigInteger, nullable=True),
    sa.Column("attribution", sa.String(16), nullable=True),
    sa.Column("upload_cc", sa.String(2), nullable=True),
    sa.Column("upload_asn", sa.BigInteger, nullable=True),
    sa.Column("upload_as_org", sa.String(255), nullable=True),
    sa.Column("attribution_mismatch", sa.Boolean, nullable=True),
    sa.Index("measurements_service_started", "service", "started_at"),
    sa.Index("measurements_started", "started_at"),
    sa.Index("measurements_verdict", "verdict", "started_at"),
    sa.Index("measurements_network", "cc", "asn", "link_type"),
    # keyset pages of GET /api/v1/measurements: a selective filter's rows in seq order
    sa.Index("measurements_key_seq", "key_id", "seq"),
    sa.Index("measurements_service_seq", "service", "seq"),
    sa.Index("measurements_verdict_seq", "verdict", "seq"),
    sa.Index("measurements_asn_seq", "asn", "seq"),
    sa.Index("measurements_log_index", "log_index", unique=True),
)

# rejected submissions, counted by reason (closed set, collector.ingest.Reason)
rejections = sa.Table(
    "rejections", metadata,
    sa.Column("reason", sa.String(32), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
)

# the transparency log (RFC 9162 hashing, collector/translog.py): one row of
# state (its size and right edge, also the lock appends take), the internal
# nodes of its perfect subtrees (leaves are rows of measurements), signed heads
log_state = sa.Table(
    "log_state", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("tree_size", sa.BigInteger, nullable=False),
    sa.Column("frontier", sa.LargeBinary, nullable=False),
)

log_nodes = sa.Table(
    "log_nodes", metadata,
    sa.Column("level", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("hash", sa.LargeBinary, nullable=False),
    sqlite_with_rowid=False,  # the key is the row: half the writes per node
)

# entries whose record was deleted (on its volunteer's request): the leaf hash
# stays, so every proof stays valid, and the redaction itself is public
log_redactions = sa.Table(
    "log_redactions", metadata,
    sa.Column("log_index", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("leaf_hash", sa.LargeBinary, nullable=False),
    sa.Column("redacted_at", UtcDateTime, nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
)

log_heads = sa.Table(
    "log_heads", metadata,
    sa.Column("tree_size", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("root_hash", sa.String(64), nullable=False),
    sa.Column("signed_at", UtcDateTime, nullable=False),
    sa.Column("head", sa.Text, nullable=False),  # the signed JSON, as served
)

# --- the dashboard's rollups, maintained at ingest (collector/dashboard/rollup.py) ---
# PostgreSQL: room left in each page of the tables that ingest updates, so that an
# update can put the row's new version in the same page (HOT: no index entry)
HOT_ROOM = {"fillfactor": 70}
# A series is one (service, path, operator, link type); '' stands for unknown so
# that the unique constraint holds (NULLs are all distinct in SQL).
dash_series = sa.Table(
    "dash_series", metadata,
    sa.Column("id", BigSerial, primary_key=True, autoincrement=True),
    sa.Column("service", sa.String(64), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("cc", sa.String(2), nullable=False),
    sa.Column("operator", sa.String(80), nullable=False),  # AS6713, org:NAME or ''
    sa.Column("link", sa.String(16), nullable=False),
    sa.Column("as_org", sa.String(255), nullable=True),
    sa.Column("dirty", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.UniqueConstraint("service", "role", "cc", "operator", "link",
                        name="dash_series_identity"),
)

# one probe's counts for one endpoint on one day: what a unit's verdict is made of
dash_endpoint_day = sa.Table(
    "dash_endpoint_day", metadata,
    sa.Column("series_id", sa.BigInteger, primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("key_id", sa.String(64), primary_key=True),
    sa.Column("endpoint", sa.String(16), primary_key=True),
    sa.Column("n_open", sa.Integer, nullable=False),
    sa.Column("n_blocked", sa.Integer, nullable=False),
    sa.Column("n_throttled", sa.Integer, nullable=False),
    sa.Column("n_inconclusive", sa.Integer, nullable=False),
    sqlite_with_rowid=False,  # stored in key order: one b-tree, not a table and an index
    postgresql_with=HOT_ROOM,
)

# units (one probe, one day, one series: weight one) per day (span 'd'), week
# (Monday to Sunday, 'w') and month ('m')
dash_unit = sa.Table(
    "dash_unit", metadata,
    sa.Column("span", sa.String(1), primary_key=True),
    sa.Column("start", sa.Date, primary_key=True),
    sa.Column("series_id", sa.BigInteger, primary_key=True),
    sa.Column("key_id", sa.String(64), primary_key=True),
    sa.Column("u_open", sa.Integer, nullable=False),
    sa.Column("u_blocked", sa.Integer, nullable=False),
    sa.Column("u_throttled", sa.Integer, nullable=False),
    sa.Column("u_inconclusive", sa.Integer, nullable=False),
    sa.Column("n", sa.Integer, nullable=False),  # measurements
    sa.Column("n_signed", sa.Integer, nullable=False),  # ... with signed attribution
    sa.Column("n_upstream", sa.Integer, nullable=False),  # ... link from network.upstream
    # the units of given keys in given series: revoked keys', which the timelines
    # take out (a handful of keys among all). The matrix reads the primary key,
    # (span, start, series, key), in whose order SQLite stores the rows. Key
    # columns only: an update, which changes counters alone, then touches no
    # index entry (PostgreSQL: HOT, migration `hot_rollups`; SQLite: it moved the
    # row's entry in the covering index this replaces, `unit_key_index`)
    sa.Index("dash_unit_series", "series_id", "span", "key_id", "start"),
    sqlite_with_rowid=False,
    postgresql_with=HOT_ROOM,
)

# units per series and day summed over every key, revoked ones included (the
# timelines subtract those from dash_unit): a timeline reads one row a day
dash_series_day = sa.Table(
    "dash_series_day", metadata,
    sa.Column("series_id", sa.BigInteger, primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("u_open", sa.Integer, nullable=False),
    sa.Column("u_blocked", sa.Integer, nullable=False),
    sa.Column("u_throttled", sa.Integer, nullable=False),
    sa.Column("u_inconclusive", sa.Integer, nullable=False),
    sqlite_with_rowid=False,
    postgresql_with=HOT_ROOM,
)

dash_method = sa.Table(
    "dash_method", metadata,
    sa.Column("span", sa.String(1), primary_key=True),
    sa.Column("start", sa.Date, primary_key=True),
    sa.Column("series_id", sa.BigInteger, primary_key=True),
    sa.Column("key_id", sa.String(64), primary_key=True),
    sa.Column("blocking", sa.String(32), primary_key=True),
    sa.Column("n", sa.Integer, nullable=False),
    sqlite_with_rowid=False,
    postgresql_with=HOT_ROOM,
)

# what each key ran: software versions and when (the fleet page)
dash_key_version = sa.Table(
    "dash_key_version", metadata,
    sa.Column("key_id", sa.String(64), primary_key=True),
    sa.Column("version", sa.String(64), primary_key=True),
    sa.Column("first_at", UtcDateTime, nullable=False),
    sa.Column("last_at", UtcDateTime, nullable=False),
    sa.Column("n", sa.BigInteger, nullable=False),
    sa.Column("n_ahead", sa.BigInteger, nullable=False),  # dated ahead of arrival: not counted
    postgresql_with=HOT_ROOM,
)

# detected starts and ends of blocking (collector/dashboard/changes.py)
dash_change = sa.Table(
    "dash_change", metadata,
    sa.Column("id", BigSerial, primary_key=True, autoincrement=True),
    sa.Column("series_id", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),  # start | end
    sa.Column("at", sa.Date, nullable=False),  # first day seen in the new state
    sa.Column("after", sa.Date, nullable=False),  # last day seen in the old state
    sa.Column("confidence", sa.Float, nullable=False),
    sa.Column("probes", sa.Integer, nullable=False),
    sa.Column("detected_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("series_id", "kind", "at", name="dash_change_identity"),
)

# NGOs' webhook subscriptions (collector/dashboard/alerts.py) and their deliveries
dash_subscription = sa.Table(
    "dash_subscription", metadata,
    sa.Column("id", BigSerial, primary_key=True, autoincrement=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("secret", sa.String(64), nullable=False),  # HMAC-SHA256 key, hex
    sa.Column("cc", sa.String(2), nullable=True),
    sa.Column("asn", sa.BigInteger, nullable=True),
    sa.Column("service", sa.String(64), nullable=True),
    sa.Column("note", sa.Text, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
)

dash_delivery = sa.Table(
    "dash_delivery", metadata,
    sa.Column("subscription_id", sa.BigInteger, primary_key=True),
    sa.Column("change_id", sa.BigInteger, primary_key=True),
    sa.Column("status", sa.String(8), nullable=False),  # pending | sent | failed
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_at", UtcDateTime, nullable=False),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Index("dash_delivery_due", "status", "next_at"),
)

# operators of the collector (the fleet page): only token hashes are kept
operator_tokens = sa.Table(
    "operator_tokens", metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("note", sa.Text, nullable=True),
    sa.Column("revoked_at", UtcDateTime, nullable=True),
)

# Limits that must hold across worker processes (collector/limits.py): sliding-window
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
