"""Probe keys and enrollment tokens: registration, lookup, revocation.

A probe registers its raw Ed25519 public key; its `key_id` is the hex SHA-256
of that key (the record's `signature.key_id`). A revoked key stays in the
table: its earlier records stay, marked, and nothing new from it is accepted.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from collector.db.engine import write_options
from collector.db.locks import lock_series
from collector.db.schema import dash_series, enrollment_tokens, probes
from probe.core.errors import SignatureError, VoipwatchError
from probe.core.record import utcnow
from probe.core.signing import decode_public_key, key_id_of

TOKEN_PREFIX = "vwt_"


@dataclass(frozen=True)
class ProbeRow:
    key_id: str
    public_key: str  # base64 of the raw 32 bytes
    registered_at: datetime
    revoked_at: datetime | None
    last_seen_at: datetime | None = None

    @property
    def public_raw(self) -> bytes:
        return decode_public_key(self.public_key)

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


class RegistrationError(VoipwatchError):
    """`code` is a stable string: bad_public_key, token_required, bad_token, revoked_key."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _row(row: sa.Row) -> ProbeRow:
    return ProbeRow(row.key_id, row.public_key, row.registered_at, row.revoked_at,
                    row.last_seen_at)


class KeyStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def register(self, public_key: str, token: str | None, *, require_token: bool,
                 also: Callable[[sa.Connection], None] | None = None
                 ) -> tuple[ProbeRow, bool]:
        """(the key's row, True if newly registered). Registering a known key
        again is harmless and needs no token. `also` runs in the transaction
        that creates a key."""
        try:
            raw = decode_public_key(public_key)
        except SignatureError as exc:
            raise RegistrationError("bad_public_key", f"public_key: {exc}") from exc
        key_id = key_id_of(raw)
        try:
            return self._register(key_id, raw, token, require_token, also)
        except sa.exc.IntegrityError:  # the same key registered at the same moment
            existing = self.get(key_id)
            if existing is None:
                raise
            if existing.revoked:
                raise RegistrationError("revoked_key", "this key was revoked", 403) from None
            return existing, False

    def _register(self, key_id: str, raw: bytes, token: str | None, require_token: bool,
                  also: Callable[[sa.Connection], None] | None) -> tuple[ProbeRow, bool]:
        with self.engine.connect().execution_options(**write_options(self.engine)) as conn, \
                conn.begin():
            existing = conn.execute(sa.select(probes).where(probes.c.key_id == key_id)).first()
            if existing is not None:
                if existing.revoked_at is not None:
                    raise RegistrationError("revoked_key", "this key was revoked; create a "
                                            "new one with `voipwatch-probe keygen --force`", 403)
                return _row(existing), False
            token_hash = None
            if token or require_token:
                token_hash = self._use_token(conn, token)
            row = {"key_id": key_id, "public_key": _b64(raw), "registered_at": utcnow(),
                   "revoked_at": None, "token_hash": token_hash, "last_seen_at": None}
            conn.execute(sa.insert(probes), row)
            if also is not None:  # e.g. count the registration against its address
                also(conn)
        return ProbeRow(key_id, row["public_key"], row["registered_at"], None), True

    def _use_token(self, conn: sa.Connection, token: str | None) -> str:
        if not token:
            raise RegistrationError("token_required", "this collector requires an "
                                    "enrollment token (voipwatch-probe register --token T)", 401)
        token_hash = hash_token(token)
        t = enrollment_tokens.c
        # one statement checks and spends a use: two registrations at once cannot
        # both take a token's last use
        spent = conn.execute(sa.update(enrollment_tokens).where(
            t.token_hash == token_hash,
            sa.or_(t.expires_at.is_(None), t.expires_at >= utcnow()),
            sa.or_(t.max_uses.is_(None), t.uses < t.max_uses)).values(uses=t.uses + 1))
        if spent.rowcount != 1:
            raise RegistrationError("bad_token", "the enrollment token is unknown, expired "
                                    "or used up", 403)
        return token_hash

    def get(self, key_id: str) -> ProbeRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(probes).where(probes.c.key_id == key_id)).first()
        return None if row is None else _row(row)

    def get_many(self, key_ids: Iterable[str]) -> dict[str, ProbeRow]:
        wanted = sorted(set(key_ids))
        if not wanted:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(probes).where(probes.c.key_id.in_(wanted))).all()
        return {row.key_id: _row(row) for row in rows}

    def list(self) -> list[ProbeRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(probes).order_by(probes.c.registered_at)).all()
        return [_row(row) for row in rows]

    def revoke(self, key_id: str) -> ProbeRow | None:
        """Revoke a key (idempotent); None if no such key."""
        with self.engine.connect().execution_options(**write_options(self.engine)) as conn, \
                conn.begin():
            # the dashboard leaves revoked keys out: every series is detected again
            # (series before probes: the order uploads lock them in, collector/db/locks.py)
            lock_series(conn)
            conn.execute(sa.update(dash_series).values(dirty=True))
            conn.execute(sa.update(probes).where(probes.c.key_id == key_id,
                                                 probes.c.revoked_at.is_(None))
                         .values(revoked_at=utcnow()))
            row = conn.execute(sa.select(probes).where(probes.c.key_id == key_id)).first()
        return None if row is None else _row(row)

    def touch(self, conn: sa.Connection, key_ids: Iterable[str]) -> None:
        conn.execute(sa.update(probes).where(probes.c.key_id.in_(sorted(set(key_ids))))
                     .values(last_seen_at=utcnow()))

    def create_token(self, *, max_uses: int | None = None, valid_days: float | None = None,
                     note: str | None = None) -> str:
        """A new enrollment token; only its hash is stored, so it is shown once."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(24)
        now = utcnow()
        with self.engine.connect().execution_options(**write_options(self.engine)) as conn, \
                conn.begin():
            conn.execute(sa.insert(enrollment_tokens), {
                "token_hash": hash_token(token), "created_at": now,
                "expires_at": now + timedelta(days=valid_days) if valid_days else None,
                "max_uses": max_uses, "uses": 0, "note": note})
        return token


def _b64(raw: bytes) -> str:
    import base64

    return base64.b64encode(raw).decode()
