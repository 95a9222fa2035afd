"""Receipts on the probe's side: the collector key pinned at registration, a
record deleted only against a valid receipt for it, a changed key refused
until the user confirms it, plain http:// to another machine refused, and
records refused for a reason that can pass kept and sent again later."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from probe.core.evidence import record_sha256
from probe.core.record import rfc3339, utcnow
from probe.core.signing import ProbeKey, write_key
from probe.store.spool import Spool
from probe.store.state import ensure_home, key_path, load_config, spool_path
from probe.upload.client import Client as UploadClient
from probe.upload.uploader import Backoff, Uploader
from tests.collector.conftest import make_record
from tests.collector.harness import Collector
from tests.conftest import probe_command

FAST = Backoff(attempts=2, base=0.01, cap=0.05)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*probe_command(), *args], capture_output=True, text=True,
                          timeout=120)


def probe_key() -> ProbeKey:
    key = ProbeKey.generate()
    ensure_home()
    write_key(key, key_path())
    return key


def spooled() -> dict[str, int]:
    with Spool(spool_path()) as s:
        return s.counts()


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    with Collector(tmp_path_factory.mktemp("receipts"), None,
                   ["--max-record-age-days", "30"]) as running:
        yield running


class _OnPath(BaseHTTPRequestHandler):
    """A box on the path answering `accepted` for everything, as a collector would."""

    def do_GET(self) -> None:
        self._answer({"public_key": ProbeKey.generate().public_b64})

    def do_POST(self) -> None:
        records = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self._answer({"results": [{"id": r["id"], "status": "accepted", "reason": None}
                                  for r in records]})

    def _answer(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def test_register_pins_the_collector_key_and_receipts_settle(collector: Collector) -> None:
    key = probe_key()
    result = cli("register", "--collector", collector.url)
    assert result.returncode == 0, result.stderr
    published = httpx.get(collector.url + "/api/v1/collector").json()
    assert load_config().collector_key == published["public_key"]
    assert f"collector key {published['key_id'][:16]}... pinned" in result.stderr
    records = [make_record(key) for _ in range(4)]
    with Spool(spool_path()) as s:
        for record in records:
            s.add(record)
    assert cli("upload").returncode == 0
    assert spooled() == {"pending": 0, "rejected": 0}
    with Spool(spool_path()) as s:
        kept = s.receipts(collector.url)
        assert s.receipt_counts() == {"receipts": 4, "audited": 0}
    assert {r["record_sha256"] for _, r, _ in kept} == {record_sha256(r) for r in records}
    assert "receipts:        4 records stored by the collector, 0 of them audited" in \
        cli("status", "--offline").stdout


def test_no_valid_receipt_no_deletion(collector: Collector) -> None:
    key = probe_key()
    with httpx.Client() as http:
        http.post(collector.url + "/api/v1/probes", json={"public_key": key.public_b64})
    records = [make_record(key) for _ in range(3)]
    with Spool(spool_path()) as s:
        for record in records:
            s.add(record)
    # receipts signed by a key other than the pinned one (a collector impersonated)
    with Spool(spool_path()) as s, UploadClient() as http:
        summary = Uploader(collector.url, s, http, FAST,
                           collector_key=ProbeKey.generate().public_raw).run()
    assert summary.error and "without a valid receipt" in summary.error
    assert "signed by another key" in summary.error
    assert spooled() == {"pending": 3, "rejected": 0}
    # a box on the path that answers `accepted` with no receipt at all
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OnPath)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        fake = f"http://127.0.0.1:{server.server_address[1]}"
        with Spool(spool_path()) as s, UploadClient() as http:
            summary = Uploader(fake, s, http, FAST).run()
        assert summary.error and "no receipt" in summary.error
    finally:
        server.shutdown()
    assert spooled() == {"pending": 3, "rejected": 0}
    # the real collector, its real key: they go (stored the first time already: duplicates
    # whose receipts name the same records)
    with Spool(spool_path()) as s, UploadClient() as http:
        assert Uploader(collector.url, s, http, FAST).run().duplicate == 3
    assert spooled() == {"pending": 0, "rejected": 0}


def test_a_changed_collector_key_needs_confirmation(tmp_path: Path) -> None:
    probe_key()
    running = Collector(tmp_path / "c", None, [])
    with running:
        assert cli("register", "--collector", running.url).returncode == 0
        first = load_config().collector_key
    (tmp_path / "c" / "collector.key").unlink()  # the operator lost it, or someone else answers
    with running:  # started again on the same port and data (the context manager starts it)
        refused = cli("register", "--collector", running.url)
        assert refused.returncode == 2
        assert "now signs with another key" in refused.stderr
        assert "--accept-new-collector-key" in refused.stderr
        assert load_config().collector_key == first
        accepted = cli("register", "--collector", running.url, "--accept-new-collector-key")
        assert accepted.returncode == 0, accepted.stderr
        assert load_config().collector_key != first


def test_plain_http_to_another_machine_needs_insecure() -> None:
    probe_key()
    for args in (("register", "--collector", "http://collector.example.org"),
                 ("upload", "--collector", "http://198.51.100.7:8470"),
                 ("run", "--collector", "https://x.example.org", "--control",
                  "http://helper.example.org", "--no-upload")):
        result = cli(*args)
        assert result.returncode == 2, result.stderr
        assert "plain http:// to another machine" in result.stderr
        assert "Traceback" not in result.stderr
    insisted = cli("register", "--collector", "http://voipwatch-test.invalid", "--insecure")
    assert insisted.returncode == 4 and "cannot reach the collector" in insisted.stderr


def test_a_collector_url_that_is_not_http_is_a_user_error() -> None:
    probe_key()
    for url, says in (("ftp://collector.example.org", "use an http:// or https:// URL"),
                      ("http://[::1", "is not a valid URL"),
                      ("https://collector.example.org:99999", "is not a valid URL"),
                      ("http:///api", "no host")):
        for args in (("upload", "--collector", url), ("register", "--collector", url),
                     ("run", "--collector", url, "--no-upload")):
            result = cli(*args)
            assert result.returncode == 2, (args, result.stderr)
            assert says in result.stderr and "internal error" not in result.stderr, result.stderr


def test_records_too_old_wait_and_go_once_the_horizon_allows(tmp_path: Path) -> None:
    key = probe_key()
    old = make_record(key, started_at=rfc3339(utcnow() - timedelta(days=90)))
    with Collector(tmp_path / "c", None, ["--max-record-age-days", "30"]) as running:
        assert cli("register", "--collector", running.url).returncode == 0
        with Spool(spool_path()) as s:
            s.add(old)
            s.add(make_record(key))
        first = cli("upload")
        assert first.returncode == 4
        assert "1 to retry later (1 too_old)" in first.stderr
        assert spooled() == {"pending": 1, "rejected": 0}
        status = cli("status", "--offline").stdout
        assert "waiting 1: too_old: older than the collector accepts" in status
        with Spool(spool_path()) as s:
            assert s.pending(10) == []  # not sent again before its time...
    # ...nor ever dropped: the operator extends the horizon, the next upload takes it
    running.args = ["--max-record-age-days", "400"]
    with running:  # started again on the same port and data (the context manager starts it)
        second = cli("upload")
        assert second.returncode == 0, second.stderr
        assert "1 accepted" in second.stderr
        item = httpx.get(running.url + "/api/v1/measurements").json()["items"]
        assert [i["late_seconds"] // 86400 for i in item if i["late_seconds"]] == [90]
    assert spooled() == {"pending": 0, "rejected": 0}


def test_an_old_spool_gets_its_retryable_rejections_back(tmp_path: Path) -> None:
    import sqlite3

    ensure_home()
    db = sqlite3.connect(spool_path())
    db.executescript("""
        CREATE TABLE records (id TEXT PRIMARY KEY, body TEXT NOT NULL, created_at REAL NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'rejected')),
            reason TEXT, attempts INTEGER NOT NULL DEFAULT 0);
        INSERT INTO records VALUES ('a', '{"id": "a"}', 1, 'rejected', 'too_old', 1);
        INSERT INTO records VALUES ('b', '{"id": "b"}', 2, 'rejected', 'bad_signature', 1);
    """)
    db.commit()
    db.close()
    with Spool(spool_path()) as s:
        assert s.counts() == {"pending": 1, "rejected": 1}
        assert [r["id"] for r in s.pending(10)] == ["a"]
