"""Operator authentication for the fleet page and the subscription routes.

An operator token is created with `voipwatch-collector operator create`
(shown once; only its SHA-256 is stored) and sent as `Authorization: Bearer
TOKEN` or, after `/login`, in an HttpOnly cookie. The stored hash is compared
in constant time (`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

import sqlalchemy as sa
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from collector.db.engine import write_options
from collector.db.schema import operator_tokens
from collector.errors import ApiError
from probe.core.record import utcnow

PREFIX = "vwo_"
COOKIE = "voipwatch_operator"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class OperatorTokens:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def create(self, note: str | None = None) -> str:
        token = PREFIX + secrets.token_urlsafe(32)
        with self.engine.connect().execution_options(**write_options(self.engine)) as conn, \
                conn.begin():
            conn.execute(sa.insert(operator_tokens), {"token_hash": _hash(token),
                                                      "created_at": utcnow(), "note": note})
        return token

    def revoke_all(self) -> int:
        with self.engine.connect().execution_options(**write_options(self.engine)) as conn, \
                conn.begin():
            return conn.execute(sa.update(operator_tokens)
                                .where(operator_tokens.c.revoked_at.is_(None))
                                .values(revoked_at=utcnow())).rowcount

    def valid(self, token: str | None) -> bool:
        if not token or len(token) > 200:
            return False
        wanted = _hash(token)
        with self.engine.connect() as conn:
            stored = conn.execute(sa.select(operator_tokens.c.token_hash).where(
                operator_tokens.c.token_hash == wanted,
                operator_tokens.c.revoked_at.is_(None))).scalar_one_or_none()
        return stored is not None and hmac.compare_digest(stored, wanted)


def presented(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(COOKIE)


async def is_operator(request: Request) -> bool:
    tokens = OperatorTokens(request.app.state.services.engine)
    return await run_in_threadpool(tokens.valid, presented(request))


async def require_operator(request: Request) -> None:
    """A dependency for JSON routes: 401 without a valid operator token."""
    if not await is_operator(request):
        raise ApiError(401, "operator_required", "send an operator token (voipwatch-collector "
                       "operator create) as Authorization: Bearer TOKEN",
                       headers={"WWW-Authenticate": "Bearer"})
