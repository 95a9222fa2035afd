"""Fixtures for the collector tests: a real PostgreSQL server per session, and
a running collector per module on each backend (SQLite, PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine

from probe.core.auth import sign_request
from probe.core.record import rfc3339, utcnow
from probe.core.signing import ProbeKey
from tests.collector.harness import Collector
from tests.conftest import in_ci
from tests.support.postgres import PostgresServer, PostgresUnavailable

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer().start()
    except PostgresUnavailable as exc:
        if in_ci():
            pytest.fail(f"PostgreSQL is needed in CI: {exc}")
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


def database_url(backend: str, request: pytest.FixtureRequest) -> str | None:
    """None for SQLite (the collector's default in its data directory)."""
    if backend == "sqlite":
        return None
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database()


@pytest.fixture(scope="module", params=BACKENDS)
def collector(request: pytest.FixtureRequest,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    """A collector shared by a module's tests, on each backend. Tests keep
    apart by using their own keys and service names."""
    db = database_url(request.param, request)
    data_dir = tmp_path_factory.mktemp(f"collector-{request.param}")
    with Collector(data_dir, db, ["--control-allow-private"]) as running:
        yield running


class UploadSigner(httpx.Auth):
    """Signs ingest requests as the probe's uploader does (probe/core/auth.py);
    streamed bodies stay unsigned."""

    def __init__(self, key: ProbeKey) -> None:
        self.key = key

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        if request.method == "POST" and request.url.path.endswith("/api/v1/measurements"):
            try:
                body = request.content
            except httpx.RequestNotRead:
                body = None
            if body is not None:
                request.headers.update(sign_request(self.key, "POST", request.url.path, body))
        yield request


def signing_client(collector: Collector) -> httpx.Client:
    """A client whose uploads are signed by the collector's uploader key
    (registered on first use; one per collector, as one probe would)."""
    client = collector.client()
    key = getattr(collector, "upload_key", None)
    if key is None:
        key = ProbeKey.generate()
        register(client, key)
        collector.upload_key = key  # type: ignore[attr-defined]
    client.auth = UploadSigner(key)
    return client


@pytest.fixture
def http(collector: Collector) -> Iterator[httpx.Client]:
    client = signing_client(collector)
    try:
        yield client
    finally:
        client.close()


def make_record(key: ProbeKey, service: str = "chat", **changes: Any) -> dict[str, Any]:
    """A signed record; `changes` replace top-level fields before signing."""
    record: dict[str, Any] = {
        "schema": "voipwatch.measurement/1",
        "id": str(uuid.uuid4()),
        "started_at": rfc3339(utcnow()),
        "runtime_ms": 12,
        "probe": {"key_id": key.key_id, "software_version": "0.1.0",
                  "public_key": key.public_b64},
        "network": {"link_type": "cellular"},
        "service": service,
        "endpoint": {"check": "tcp", "host": "203.0.113.7", "port": 443, "transport": "tcp",
                     "role": "call"},
        "verdict": "open",
        "blocking": None,
        "evidence": {"connect_ms": 12.5, "rtt": [0.1, 1e-7, 100.0], "note": "é ✓"},
    }
    record.update(changes)
    return key.sign(record)


def register(client: httpx.Client, key: ProbeKey) -> None:
    response = client.post("/api/v1/probes", json={"public_key": key.public_b64})
    assert response.status_code in (200, 201), response.text


def revoked_store(data: Path, db: str | None, uploader: ProbeKey, revoked: ProbeKey,
                  records: list[dict[str, Any]], options: list[str]) -> Engine:
    """The store of a collector (run with `options`, then stopped) holding
    `records`, all accepted from `uploader`, and `revoked`'s key registered
    then revoked."""
    from collector.db.engine import make_engine

    with Collector(data, db, options) as collector, collector.client() as client:
        for key in (uploader, revoked):
            register(client, key)
        client.auth = UploadSigner(uploader)
        response = client.post("/api/v1/measurements", json=records)
        assert {r["status"] for r in response.json()["results"]} == {"accepted"}, response.text
        assert collector.cli("probes", "revoke", revoked.key_id).returncode == 0
    return make_engine(db or f"sqlite:///{data / 'collector.sqlite3'}")


def unique_service() -> str:
    return f"svc-{uuid.uuid4().hex[:10]}"
