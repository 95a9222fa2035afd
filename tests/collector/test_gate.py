"""The gate against slow and greedy clients (collector/gate.py), on a real
collector on loopback: a request body that stops coming, or trickles in, is
answered 408 `body_timeout` and its connection closed within the deadline
(uvicorn itself would wait forever), a slow but steady body still goes in,
exports streamed at once are capped per process and per address, an export
whose client stops reading, or that goes on too long, is ended (its reads
with it) and so are the reads of one whose client goes away, and connections
are capped (uvicorn's
limit_concurrency: one that never sends a request is otherwise held forever)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from probe.core.auth import sign_request
from probe.core.signing import ProbeKey
from tests.collector.conftest import BACKENDS, database_url, make_record, register, unique_service
from tests.collector.harness import Collector

INGEST = "/api/v1/measurements"
IDLE = 1.0  # body_timeout_seconds in these tests
RATE = 2000  # body_min_bytes_per_second
CONNECTIONS = 8  # max_connections


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    env = dict(os.environ, VOIPWATCH_COLLECTOR_BODY_TIMEOUT_SECONDS=str(IDLE),
               VOIPWATCH_COLLECTOR_BODY_MIN_BYTES_PER_SECOND=str(RATE),
               VOIPWATCH_COLLECTOR_EXPORT_CONCURRENCY="1",
               VOIPWATCH_COLLECTOR_EXPORT_CONCURRENCY_PER_CLIENT="1",
               VOIPWATCH_COLLECTOR_MAX_CONNECTIONS=str(CONNECTIONS))
    with Collector(tmp_path_factory.mktemp("gate"), env=env) as running:
        yield running


def _connect(collector: Collector, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", collector.port), timeout=30,
                                    source_address=(source, 0))
    return sock


def _head(path: str, length: int, extra: dict[str, str] | None = None,
          method: str = "POST") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: collector", f"Content-Length: {length}",
             "Content-Type: application/x-www-form-urlencoded"
             if path == "/login" else "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in (extra or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes, bool]:
    """Status, headers, body of the response, and whether the server then closed."""
    sock.settimeout(30)
    data = b""
    while b"\r\n\r\n" not in data:
        part = sock.recv(65536)
        assert part, f"closed without an answer: {data!r}"
        data += part
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":")
                                                             for line in lines[1:])}
    while len(body) < int(headers.get("content-length", "0")):
        part = sock.recv(65536)
        assert part
        body += part
    closed = False
    with contextlib.suppress(TimeoutError):
        closed = sock.recv(1) == b""
    return int(lines[0].split()[1]), headers, body, closed


@pytest.mark.parametrize("path", ["/login", INGEST])
def test_a_stalled_unsigned_body_is_answered_408_within_the_deadline(
        collector: Collector, path: str) -> None:
    """The audit's slow body: headers and all but the last byte, then nothing
    (`/login` reads a form, unsigned ingest a JSON array: both in the route)."""
    body = b"[" + b" " * 10_000 + b"]"
    socks = []
    start = time.monotonic()
    for _ in range(5):
        sock = _connect(collector)
        sock.sendall(_head(path, len(body)) + body[:-1])
        socks.append(sock)
    for sock in socks:
        status, headers, answer, closed = _answer(sock)
        assert (status, json.loads(answer)["error"]) == (408, "body_timeout"), answer
        assert headers["connection"] == "close" and closed
        sock.close()
    assert time.monotonic() - start < IDLE + 3
    assert httpx.get(collector.url + "/healthz", timeout=10).status_code == 200


def test_a_stalled_signed_upload_is_answered_408(collector: Collector) -> None:
    key = ProbeKey.generate()
    with collector.client() as client:
        register(client, key)
    body = json.dumps([make_record(key, unique_service()) for _ in range(20)]).encode()
    sock = _connect(collector)
    start = time.monotonic()
    sock.sendall(_head(INGEST, len(body), sign_request(key, "POST", INGEST, body))
                 + body[:-1])
    status, _, answer, closed = _answer(sock)
    assert (status, json.loads(answer)["error"], closed) == (408, "body_timeout", True)
    assert IDLE - 0.2 < time.monotonic() - start < IDLE + 3
    sock.close()


def test_a_trickled_body_is_cut_off_by_the_minimum_rate(collector: Collector) -> None:
    """A byte every 0.3 s never waits `IDLE` for the next one, but averages
    far under `RATE`: answered once its first `IDLE` seconds have passed."""
    body = b"[" + b" " * 4000 + b"]"
    sock = _connect(collector)
    sock.sendall(_head(INGEST, len(body)))
    start = time.monotonic()
    sock.settimeout(0.3)
    answer = b""
    for byte in body:
        try:
            answer = sock.recv(65536)
            break
        except TimeoutError:
            sock.send(bytes([byte]))
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert time.monotonic() - start < IDLE + 2
    sock.close()


def test_a_slow_but_steady_body_goes_in(collector: Collector) -> None:
    """Well above the minimum rate, in pieces spread over several times the
    idle deadline: a slow link is not cut off (a signed upload, as a probe's)."""
    key = ProbeKey.generate()
    with collector.client() as client:
        register(client, key)
    records = [make_record(key, unique_service()) for _ in range(40)]
    body = json.dumps(records).encode()
    pieces = 12
    step = -(-len(body) // pieces)
    assert len(body) / (pieces * 0.3) > 2 * RATE  # the rate it goes at, well above
    sock = _connect(collector)
    sock.sendall(_head(INGEST, len(body), sign_request(key, "POST", INGEST, body)))
    for start in range(0, len(body), step):
        time.sleep(0.3)  # 3.6 s in all, over three times IDLE
        sock.sendall(body[start:start + step])
    status, _, answer, _ = _answer(sock)
    assert status == 200, answer
    assert {r["status"] for r in json.loads(answer)["results"]} == {"accepted"}
    sock.close()


def test_exports_at_once_are_capped(collector: Collector, tmp_path: Path) -> None:
    """One export at once per process and per address here: a client that
    does not read its export holds its place; another address gets 503, the
    same address 429 (for an export's proof too: it lists the whole log), and
    the place is free again once the first goes away."""
    key = ProbeKey.generate()
    with collector.client() as client:
        register(client, key)
        service = unique_service()
        fat = {"blob": ["y" * 100] * 500}  # about 52 kB a record
        for _ in range(3):  # 9 MB of export: more than the sockets' buffers hold
            records = [make_record(key, service, evidence=fat) for _ in range(60)]
            body = json.dumps(records).encode()
            response = client.post(INGEST, content=body, headers={
                "Content-Type": "application/json",
                **sign_request(key, "POST", INGEST, body)}, timeout=60)
            assert {r["status"] for r in response.json()["results"]} == {"accepted"}
    reader = socket.socket()
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reader.connect(("127.0.0.1", collector.port))
    reader.sendall(f"GET /api/v1/export?service={service} HTTP/1.1\r\nHost: c\r\n\r\n".encode())
    reader.settimeout(10)
    assert reader.recv(12).startswith(b"HTTP/1.1 200")  # streaming, and not read further
    url = f"{collector.url}/api/v1/export?service={service}"
    same = httpx.get(url, timeout=10)
    assert (same.status_code, same.json()["error"]) == (429, "rate_limited")
    assert "retry-after" in same.headers
    other = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=10)
    busy = other.get(url)
    assert (busy.status_code, busy.json()["error"]) == (503, "exports_busy")
    assert "retry-after" in busy.headers
    proof = f"{collector.url}/api/v1/export/proof?service={service}"  # every leaf: the same
    assert httpx.get(proof, timeout=10).status_code == 429
    assert other.get(proof).status_code == 503
    assert httpx.get(collector.url + "/api/v1/measurements?limit=1", timeout=10
                     ).status_code == 200  # the rest of the API is not held up
    reader.close()
    deadline = time.monotonic() + 10
    while (done := other.get(url)).status_code != 200:
        assert time.monotonic() < deadline, done.text
        time.sleep(0.2)
    assert len(done.text.splitlines()) == 180
    other.close()


def test_connections_are_capped(collector: Collector) -> None:
    idle = [_connect(collector) for _ in range(CONNECTIONS)]  # never send a byte
    try:
        time.sleep(0.3)
        assert httpx.get(collector.url + "/healthz", timeout=10).status_code == 503
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + 10
    while httpx.get(collector.url + "/healthz", timeout=10).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)


STALL = 5.0  # export_stall_seconds in the tests below
LONGEST = 10.0  # export_max_seconds
RECORDS = 3000  # of about 52 kB each: a 157 MB export, more than is read ahead


@pytest.fixture(scope="module", params=BACKENDS)
def stalling(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[tuple[Collector, ProbeKey, str]]:
    """A collector holding RECORDS large records of one service."""
    db = database_url(request.param, request)
    env = dict(os.environ, VOIPWATCH_COLLECTOR_EXPORT_STALL_SECONDS=str(STALL),
               VOIPWATCH_COLLECTOR_EXPORT_MAX_SECONDS=str(LONGEST),
               VOIPWATCH_COLLECTOR_EXPORT_CONCURRENCY_PER_CLIENT="1")
    with Collector(tmp_path_factory.mktemp(f"stall-{request.param}"), db, env=env) as running:
        key = ProbeKey.generate()
        with running.client() as client:
            register(client, key)
        service = unique_service()
        fat = {"blob": ["y" * 100] * 500}  # about 52 kB a record
        for _ in range(RECORDS // 60):
            _upload(running, key, [make_record(key, service, evidence=fat) for _ in range(60)])
        yield running, key, service


def _upload(collector: Collector, key: ProbeKey, records: list[dict[str, Any]]) -> None:
    body = json.dumps(records).encode()
    response = httpx.post(collector.url + INGEST, content=body, timeout=60, headers={
        "Content-Type": "application/json", **sign_request(key, "POST", INGEST, body)})
    assert {r["status"] for r in response.json()["results"]} == {"accepted"}


def _descendants(pid: int) -> list[str]:
    """The command lines of the processes below `pid`."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        with contextlib.suppress(OSError):
            found.append((Path("/proc") / str(child) / "cmdline").read_bytes()
                         .replace(b"\0", b" ").decode(errors="replace"))
        todo += children.get(child, [])
    return found


def _tries(count: int, pause: float) -> Iterator[int]:
    for attempt in range(count):
        if attempt:
            time.sleep(pause)
        yield attempt


def _snapshot_held(collector: Collector) -> bool:
    """Whether a read still holds a snapshot of the database. SQLite: the
    write-ahead log cannot be checkpointed and reset (TRUNCATE) while a reader uses
    its frames; PostgreSQL: a backend still runs the export's COPY."""
    if collector.db is None:
        connection = sqlite3.connect(collector.data_dir / "collector.sqlite3", timeout=0)
        try:
            busy, _, _ = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            connection.close()
        return bool(busy)
    import psycopg

    with psycopg.connect(collector.db) as connection:
        row = connection.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                 "current_database() AND query ILIKE 'COPY%measurements%' "
                                 "AND state = 'active'").fetchone()
    return bool(row and row[0])


def _open_export(collector: Collector, query: str, window: int | None = None
                 ) -> tuple[socket.socket, bytes, float]:
    """A raw connection streaming an export (its receive buffer `window` bytes),
    the bytes first read and when the export began. The place an earlier test's
    export held may take a moment to come back after its end: 429 until then."""
    deadline = time.monotonic() + 10
    while True:
        reader = socket.socket()
        if window:
            reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, window)
        reader.settimeout(10)
        reader.connect(("127.0.0.1", collector.port))
        reader.sendall(f"GET /api/v1/export?{query} HTTP/1.1\r\nHost: c\r\n\r\n".encode())
        started = time.monotonic()
        received = reader.recv(12)
        if not received.startswith(b"HTTP/1.1 429"):
            assert received.startswith(b"HTTP/1.1 200"), received
            return reader, received, started
        reader.close()
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_an_export_whose_client_stops_reading_is_ended(
        stalling: tuple[Collector, ProbeKey, str]) -> None:
    """A client that stops reading its export (its socket full) loses it after
    export_stall_seconds: the connection is closed without the body's end, its
    place is free, and the export's reads are over (on SQLite its reader process
    is gone; on PostgreSQL its COPY); no error is logged."""
    collector, key, service = stalling
    reader, received, _ = _open_export(collector, f"service={service}", window=4096)
    while b"\r\n\r\n" not in received or len(received.partition(b"\r\n\r\n")[2]) < 2000:
        part = reader.recv(4096)  # some records: the export's read has begun
        assert part
        received += part
    stalled_at = time.monotonic()
    # written after the export's read began: on PostgreSQL its snapshot is held while
    # the client stalls; on SQLite the reads are in ranges, none held while waiting
    # to write (collector/sqlite_reader.py), so the write-ahead log can be reset (the
    # collector's own checkpoint may be busy at one moment: a few tries)
    later = unique_service()
    _upload(collector, key, [make_record(key, later) for _ in range(5)])
    if collector.db is None:
        assert any(not _snapshot_held(collector) for _ in _tries(20, 0.1))
        assert any("collector.sqlite_reader" in command  # the reader waits, holding nothing
                   for command in _descendants(collector.proc.pid))
    else:
        assert _snapshot_held(collector)
    url = f"{collector.url}/api/v1/export?service={service}"
    assert httpx.get(url, timeout=10).status_code == 429  # its place is held meanwhile

    deadline = stalled_at + STALL + 15
    while '"event": "export_stalled"' not in collector.log().replace('":"', '": "'):
        assert time.monotonic() < deadline, collector.log()[-2000:]
        time.sleep(0.1)
    assert time.monotonic() - stalled_at >= STALL
    while _snapshot_held(collector) or any("collector.sqlite_reader" in command for command
                                          in _descendants(collector.proc.pid)):
        assert time.monotonic() < deadline, _descendants(collector.proc.pid)
        time.sleep(0.2)
    done = httpx.get(f"{collector.url}/api/v1/export?service={later}", timeout=30)
    assert done.status_code == 200 and len(done.text.splitlines()) == 5  # the place is free
    reader.settimeout(30)
    while part := reader.recv(65536):  # what was on its way, then the end: closed
        received += part
    assert len(received) < RECORDS * 50_000
    assert not received.endswith(b"0\r\n\r\n")  # cut off, not a complete chunked body
    reader.close()
    assert '"level":"error"' not in collector.log().replace('": "', '":"')


def test_an_export_whose_client_goes_away_ends_its_reads(
        stalling: tuple[Collector, ProbeKey, str]) -> None:
    """A client gone in the midst of an export: its reads end with it (they used
    to live on, reader process and snapshot, until the garbage collector ran)."""
    collector, key, service = stalling
    for format in ("jsonl", "parquet"):
        reader, received, _ = _open_export(collector, f"service={service}&format={format}")
        while len(received) < 200_000:
            part = reader.recv(65536)
            assert part
            received += part
        _upload(collector, key, [make_record(key, unique_service()) for _ in range(5)])
        reader.close()
        deadline = time.monotonic() + 10
        while _snapshot_held(collector) or any("collector.sqlite_reader" in command for command
                                              in _descendants(collector.proc.pid)):
            assert time.monotonic() < deadline, (format, _descendants(collector.proc.pid))
            time.sleep(0.2)
    assert '"level":"error"' not in collector.log().replace('": "', '":"')


def test_an_export_read_slowly_is_ended_at_its_longest(
        stalling: tuple[Collector, ProbeKey, str]) -> None:
    """A client that reads steadily but slowly (never export_stall_seconds without
    taking a piece) would hold the export's snapshot as long as it liked: after
    export_max_seconds the export is ended, cut short, and its reads with it."""
    collector, _, service = stalling
    reader, received, started = _open_export(collector, f"service={service}")
    while part := reader.recv(65536):  # about 1.3 MB/s: the whole would take 2 minutes
        received += part
        time.sleep(0.05)
        assert time.monotonic() - started < LONGEST + 15
    reader.close()
    assert time.monotonic() - started >= LONGEST
    assert received.startswith(b"HTTP/1.1 200")
    assert len(received) < RECORDS * 50_000 and not received.endswith(b"0\r\n\r\n")
    assert '"event": "export_too_long"' in collector.log().replace('":"', '": "')
    deadline = time.monotonic() + 10
    while _snapshot_held(collector) or any("collector.sqlite_reader" in command for command
                                           in _descendants(collector.proc.pid)):
        assert time.monotonic() < deadline, _descendants(collector.proc.pid)
        time.sleep(0.2)
    assert '"level":"error"' not in collector.log().replace('": "', '":"')
