"""Limits that hold across worker processes, kept in the database (SQLite or
PostgreSQL), so `serve --workers N` does not multiply them by N.

- `Counters`: fixed-window counters (registrations per client address,
  unsigned ingest per address, ingest quota per key, distinct test-helper
  targets per key).
- `Leases`: slots with a global and a per-key cap, handed out by a fair
  queue: while keys wait, a slot goes to the waiting key that holds the
  fewest, so one key cannot take every slot however fast it asks.

IPv6 clients are counted per /64 (one subscriber's prefix), IPv4 per address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from collector.db.engine import write_options
from collector.db.schema import leases, rate_counters

WAIT_SECONDS = 2.0  # a waiter's place in the queue lasts this long unless renewed
POLL_SECONDS = 0.05


def client_subject(address: str | None) -> str:
    """What per-address limits count: the IPv4 address, or the IPv6 /64."""
    if not address:
        return "-"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{ip}/64", strict=False))
    return str(ip)


class _Writer:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    def _insert(self, table: sa.Table) -> Any:
        return (postgresql.insert(table) if self.dialect == "postgresql"
                else sqlite.insert(table))

    def _connect(self) -> Any:
        return self.engine.connect().execution_options(**write_options(self.engine))


class OverLimit(Exception):
    """Raised inside a write transaction whose count went over its limit: the
    transaction rolls back, and nothing it wrote (nor the count) remains."""

    def __init__(self, subject: str) -> None:
        super().__init__(subject)
        self.subject = subject


def _window(now: float, seconds: float) -> tuple[int, float]:
    """The fixed window `now` falls in, and how much the previous one weighs
    in a sliding window: the part of it still inside the last `seconds`."""
    window = int(now // seconds)
    return window, 1.0 - (now / seconds - window)


def _carried(conn: sa.Connection, scope: str, subject: str, window: int, weight: float) -> int:
    """What the window before `window` still counts, at `weight`."""
    c = rate_counters.c
    previous = conn.execute(sa.select(c.count).where(
        c.scope == scope, c.subject == subject, c.window == window - 1)).scalar()
    return int((previous or 0) * weight)


class Counters(_Writer):
    def take(self, scope: str, subject: str, limit: int, window_seconds: float,
             cost: int = 1, now: float | None = None) -> float:
        """0.0 if `cost` more fit under `limit` per `window_seconds` (counted),
        else the seconds to wait (nothing counted). A sliding window: the
        previous window weighs in by the part of it still inside the last
        `window_seconds`, so a burst across a window boundary counts whole."""
        window, weight = _window(time.time() if now is None else now, window_seconds)
        if cost > limit:
            return window_seconds
        c = rate_counters.c
        with self._connect() as conn, conn.begin():
            room = limit - _carried(conn, scope, subject, window, weight)
            if cost > room:
                return max(weight * window_seconds, 1.0)
            statement = self._insert(rate_counters).values(
                scope=scope, subject=subject, window=window, count=cost)
            statement = statement.on_conflict_do_update(
                index_elements=["scope", "subject", "window"], set_={"count": c.count + cost},
                where=c.count + cost <= room).returning(c.count)
            taken = conn.execute(statement).first()
            if secrets.randbelow(200) == 0:  # now and then, forget old windows
                conn.execute(sa.delete(rate_counters).where(c.window < window - 1,
                                                            c.scope == scope))
        return 0.0 if taken is not None else max(weight * window_seconds, 1.0)

    def usage(self, scope: str, subject: str, window_seconds: float,
              now: float | None = None) -> int:
        """The sliding-window count, read only (no write lock)."""
        window, weight = _window(time.time() if now is None else now, window_seconds)
        c = rate_counters.c
        with self.engine.connect() as conn:
            counts = dict(conn.execute(sa.select(c.window, c.count).where(
                c.scope == scope, c.subject == subject,
                c.window.in_([window - 1, window]))).all())
        return int(counts.get(window - 1, 0) * weight) + int(counts.get(window, 0))

    def charge(self, conn: sa.Connection, scope: str, subject: str, limit: int,
               window_seconds: float, cost: int, now: float | None = None) -> bool:
        """Count `cost` inside the caller's write transaction; False when the
        sliding-window count is then over `limit` (the caller rolls back, which
        takes the count back). Exact across concurrent transactions: the upsert
        holds the window's row to the commit (PostgreSQL; SQLite's writes take
        turns), so the next one counts on top of this one, never beside it."""
        window, weight = _window(time.time() if now is None else now, window_seconds)
        c = rate_counters.c
        statement = self._insert(rate_counters).values(
            scope=scope, subject=subject, window=window, count=cost)
        counted = conn.execute(statement.on_conflict_do_update(
            index_elements=["scope", "subject", "window"], set_={"count": c.count + cost}
        ).returning(c.count)).scalar_one()
        return _carried(conn, scope, subject, window, weight) + counted <= limit

    def distinct(self, scope: str, owner: str, item: str, limit: int, window_seconds: float,
                 now: float | None = None) -> float:
        """Count `item` once per window for `owner`; 0.0 while the owner has at
        most `limit` distinct items in the window, else the wait."""
        now = time.time() if now is None else now
        window = int(now // window_seconds)
        subject = f"{owner}|{item}"[:160]
        c = rate_counters.c
        with self._connect() as conn, conn.begin():
            known = conn.execute(sa.select(c.count).where(
                c.scope == scope, c.subject == subject, c.window == window)).first()
            if known is not None:
                return 0.0
            count = conn.execute(sa.select(sa.func.count()).select_from(rate_counters).where(
                c.scope == scope, c.window == window,
                c.subject.startswith(f"{owner}|", autoescape=True))).scalar_one()
            if count >= limit:
                return (window + 1) * window_seconds - now
            conn.execute(sa.insert(rate_counters).values(scope=scope, subject=subject,
                                                         window=window, count=1))
        return 0.0


class Leases(_Writer):
    def _lock(self, conn: sa.Connection, kind: str) -> None:
        if self.dialect == "postgresql":  # SQLite's BEGIN IMMEDIATE already serialises
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
                         {"k": f"voipwatch.leases.{kind}"})

    def try_acquire(self, ticket: str, kind: str, key_id: str, cap: int, per_key: int,
                    hold_seconds: float) -> bool:
        """One turn of the fair queue: take a slot, or keep a place in the queue."""
        now = time.time()
        c = leases.c
        with self._connect() as conn, conn.begin():
            self._lock(conn, kind)
            conn.execute(sa.delete(leases).where(c.kind == kind, c.expires_at < now))
            held = dict(conn.execute(sa.select(c.key_id, sa.func.count()).where(
                c.kind == kind, c.held.is_(True)).group_by(c.key_id)).all())
            waiting = set(conn.execute(sa.select(c.key_id).where(
                c.kind == kind, c.held.is_(False)).distinct()).scalars())
            mine = held.get(key_id, 0)
            fewest = min((held.get(k, 0) for k in waiting if k != key_id), default=mine)
            if sum(held.values()) < cap and mine < per_key and mine <= fewest:
                conn.execute(sa.delete(leases).where(c.id == ticket))
                conn.execute(sa.insert(leases).values(id=ticket, kind=kind, key_id=key_id,
                                                      held=True,
                                                      expires_at=now + hold_seconds))
                return True
            conn.execute(sa.delete(leases).where(c.id == ticket))
            conn.execute(sa.insert(leases).values(id=ticket, kind=kind, key_id=key_id,
                                                  held=False, expires_at=now + WAIT_SECONDS))
            return False

    def release(self, ticket: str) -> None:
        with self._connect() as conn, conn.begin():
            conn.execute(sa.delete(leases).where(leases.c.id == ticket))

    async def acquire(self, kind: str, key_id: str, cap: int, per_key: int,
                      deadline: float, hold_seconds: float) -> str | None:
        """A lease id once a slot is free (by `deadline`, monotonic), else None."""
        ticket = secrets.token_hex(12)
        try:
            while True:
                if await asyncio.to_thread(self.try_acquire, ticket, kind, key_id, cap,
                                           per_key, hold_seconds):
                    return ticket
                if time.monotonic() + POLL_SECONDS >= deadline:
                    await asyncio.to_thread(self.release, ticket)
                    return None
                await asyncio.sleep(POLL_SECONDS)
        except BaseException:  # cancelled: leave neither a slot nor a place
            await asyncio.shield(asyncio.to_thread(self.release, ticket))
            raise

    def held(self, kind: str) -> dict[str, int]:
        c = leases.c
        with self.engine.connect() as conn:
            return dict(conn.execute(sa.select(c.key_id, sa.func.count()).where(
                c.kind == kind, c.held.is_(True), c.expires_at >= time.time())
                .group_by(c.key_id)).all())
