"""Engines: SQLite (WAL, the embedded default) or PostgreSQL through psycopg 3."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError

from collector.db.busy import BusyMark, begin
from probe.core.errors import UserError


def normalise_url(url: str) -> URL:
    """`postgresql://` means psycopg 3 here (SQLAlchemy would pick psycopg2)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise UserError(f"--db {url!r} is not a database URL (sqlite:///PATH or "
                        "postgresql://USER@HOST/DB)") from exc
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername not in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
        raise UserError(f"--db {parsed.render_as_string(hide_password=True)}: unsupported "
                        "database (use sqlite:///PATH or postgresql://...)")
    return parsed


def make_engine(url: str, *, serving: bool = False) -> Engine:
    """`serving`: the engine of a `serve` process, whose SQLite WAL is
    checkpointed by a background thread (collector/db/checkpoint.py) rather
    than inside the commit that crosses the threshold, with the write lock held."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, serving)
    return sa.create_engine(parsed, pool_pre_ping=True, pool_size=8, max_overflow=8)


WAL_LIMIT_BYTES = 64 * 1024 * 1024  # past it, the WAL is checkpointed and restarted
BUSY_TIMEOUT_MS = 30_000  # how long a statement waits for another writer (collector/db/busy.py)


def _sqlite_engine(url: URL, serving: bool = False) -> Engine:
    if url.database and url.database != ":memory:":
        path = Path(url.database)
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise UserError(f"cannot create the data directory {path.parent}: "
                            f"{exc.strerror}") from exc
    engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000,
                                                 "check_same_thread": False})
    mark = BusyMark(url.database)

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # let SQLAlchemy's "begin" event issue BEGIN itself (see below)
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a batch the collector answered `accepted` survives a power cut,
        # since the probe deletes its copy on that answer
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        # 32 MiB of pages per connection (SQLite's default is 2 MiB): the indexes'
        # upper levels stay in memory as the table grows to millions of rows
        cursor.execute("PRAGMA cache_size=-32768")
        if serving:
            cursor.execute("PRAGMA wal_autocheckpoint=0")  # collector/db/checkpoint.py
            # the WAL restarts from its beginning, keeping at most this much of the
            # file: commits overwrite it instead of growing it
            cursor.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(connection: sa.Connection) -> None:
        # writers take the lock up front: a deferred transaction that reads and then
        # writes fails at once with SQLITE_BUSY when another writer got there first
        options = connection.get_execution_options()
        mode = options.get("sqlite_begin", "DEFERRED")
        if mode == "IMMEDIATE" and not options.get("sqlite_patient"):
            # a request's write: found out once when held by a long writer
            begin(connection, "BEGIN IMMEDIATE", mark, BUSY_TIMEOUT_MS)
        else:
            connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


def write_options(engine: Engine, patient: bool = False) -> dict[str, Any]:
    """Execution options for a transaction that will write; `patient`: it waits
    the full busy timeout even while the database is marked busy (an operator's
    command, not a request; collector/db/busy.py)."""
    if engine.dialect.name != "sqlite":
        return {}
    return {"sqlite_begin": "IMMEDIATE", "sqlite_patient": patient}


def describe(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)
