"""`voipwatch-probe register` and `upload` (probe/upload/uploader.py) against a real
collector: what leaves the spool, what stays, and what the user is told."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from probe.core.errors import Unreachable
from probe.core.signing import ProbeKey, write_key
from probe.store.spool import Spool
from probe.store.state import ensure_home, key_path, load_config, spool_path
from probe.upload.client import Client as UploadClient
from probe.upload.uploader import Backoff, Uploader, _json_array, upload_and_report
from tests.collector.conftest import make_record
from tests.collector.harness import Collector
from tests.conftest import probe_command
from tests.support.tcp_servers import closed_port

FAST = Backoff(attempts=3, base=0.01, cap=0.05)


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    with Collector(tmp_path_factory.mktemp("uploader-collector"), None,
                   ["--max-batch", "200"]) as running:
        yield running


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*probe_command(), *args], capture_output=True, text=True,
                          timeout=120)


def probe_key() -> ProbeKey:
    key = ProbeKey.generate()
    ensure_home()
    write_key(key, key_path())
    return key


def spool(*records: dict[str, Any]) -> None:
    with Spool(spool_path()) as s:
        for record in records:
            s.add(record)


def counts() -> dict[str, int]:
    with Spool(spool_path()) as s:
        return s.counts()


def test_register_saves_the_collector(collector: Collector) -> None:
    result = cli("register", "--collector", collector.url + "/")
    assert result.returncode == 0, result.stderr
    key_id = result.stdout.strip()
    assert len(key_id) == 64
    assert load_config().collector == collector.url
    again = cli("register", "--collector", collector.url)  # harmless the second time
    assert (again.returncode, again.stdout.strip()) == (0, key_id)
    assert f"collector:       {collector.url}" in cli("status").stdout


def test_register_errors_are_sentences(collector: Collector) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    # docs/cli.md: 2 for what the user typed, 4 for a collector that cannot be reached
    for args, message, status in (
        (("--collector", dead), f"cannot reach the collector at {dead}: connection failed", 4),
        (("--collector", "ftp://example.org"), "use an http:// or https:// URL", 2),
        (("--collector", collector.url + "/nothing-here"), "refused the registration "
                                                           "(HTTP 404)", 2),
    ):
        result = cli("register", *args)
        assert result.returncode == status, result.stderr
        assert message in result.stderr
        assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) <= 2


def test_rejected_records_are_kept_aside(collector: Collector) -> None:
    key = probe_key()
    assert cli("register", "--collector", collector.url).returncode == 0
    good = [make_record(key) for _ in range(3)]
    tampered = make_record(key)
    tampered["verdict"] = "blocked"
    stranger = make_record(ProbeKey.generate())
    spool(*good, tampered, stranger)
    result = cli("upload")
    assert result.returncode == 4  # the collector refused records: not bad input
    # a key the collector does not know may be a registration mishap: that record waits
    assert ("3 accepted, 0 duplicate, 1 rejected (1 bad_signature), 1 to retry later "
            "(1 unknown_key); 1 left in the spool") in result.stderr
    assert "the collector rejected 1 records" in result.stderr
    assert counts() == {"pending": 1, "rejected": 1}
    status = cli("status").stdout
    assert f"rejected {tampered['id']}: bad_signature" in status
    assert "waiting 1: unknown_key: the collector does not know this probe's key" in status
    assert stranger["id"] in status
    # only what waits is left: an upload says so, and it stays
    again = cli("upload")
    assert again.returncode == 4 and "1 to retry later (1 unknown_key)" in again.stderr
    assert counts() == {"pending": 1, "rejected": 1}


def test_unreachable_collector_keeps_everything(tmp_path: Path) -> None:
    key = probe_key()
    spool(*(make_record(key) for _ in range(5)))
    dead = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(Unreachable, match=r"cannot upload to .*connection failed.*5 records stay"):
        upload_and_report(dead, key, strict=True, backoff=FAST)
    upload_and_report(dead, key, strict=False, backoff=FAST)  # after a run: reported only
    assert counts() == {"pending": 5, "rejected": 0}


def test_retries_until_the_collector_comes_back(collector: Collector,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    key = probe_key()
    with collector.client() as http:
        http.post("/api/v1/probes", json={"public_key": key.public_b64})
    spool(*(make_record(key) for _ in range(20)))
    collector.stop()
    restart = threading.Timer(0.5, collector.restart)
    restart.start()
    try:
        upload_and_report(collector.url, key, strict=True,
                          backoff=Backoff(attempts=12, base=0.2, cap=1.0))
    finally:
        restart.join()
    assert "20 accepted" in capsys.readouterr().err
    assert counts() == {"pending": 0, "rejected": 0}


def test_batches_shrink_when_too_large_and_progress_is_shown(collector: Collector) -> None:
    key = probe_key()
    with collector.client() as http:
        http.post("/api/v1/probes", json={"public_key": key.public_b64})
    spool(*(make_record(key) for _ in range(1100)))
    seen: list[tuple[int, int]] = []
    with Spool(spool_path()) as s, UploadClient(timeout=30) as http:
        # the collector takes at most 200 records per request: 500 halves to 250, then 125
        summary = Uploader(collector.url, s, http, FAST, signer=key,
                           progress=lambda done, total: seen.append((done, total))).run()
    assert (summary.accepted, summary.left, summary.error) == (1100, 0, None)
    assert seen[-1] == (1100, 1100) and len(seen) >= 6
    assert all(done % 125 == 0 for done, _ in seen[:-1])


class SlowUplink:
    """A TCP proxy to the collector that reads what the probe sends at `rate`
    bytes a second through a small window, as a throttled uplink does; the
    answers come back at full speed."""

    def __init__(self, target: int, rate: int) -> None:
        self.target, self.rate = target, rate
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._up, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client), daemon=True).start()

    def _up(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while data := client.recv(1024):
                upstream.sendall(data)
                time.sleep(len(data) / self.rate)
        except OSError:
            pass
        finally:
            upstream.close()

    def _down(self, upstream: socket.socket, client: socket.socket) -> None:
        try:
            while data := upstream.recv(65536):
                client.sendall(data)
        except OSError:
            pass
        finally:
            client.close()

    def close(self) -> None:
        self.listener.close()


def test_batches_shrink_when_the_uplink_is_too_slow_for_them(collector: Collector) -> None:
    """A batch that cannot be sent within the client's timeout is halved (and the
    next batches are as small): over a throttled uplink every record goes, where
    the same batch was sent again and again before."""
    key = probe_key()
    with collector.client() as http:
        http.post("/api/v1/probes", json={"public_key": key.public_b64})
    records = [make_record(key) for _ in range(320)]
    spool(*records)
    uplink = SlowUplink(int(collector.url.rsplit(":", 1)[1]), rate=64 * 1024)
    try:
        with Spool(spool_path()) as s, UploadClient(timeout=2.0) as http:
            # 320 records of ~0.8 kB take ~4 s at 64 kB/s: 80 at a time fit in 2 s
            uploader = Uploader(f"http://127.0.0.1:{uplink.port}", s, http,
                                Backoff(attempts=6, base=0.01, cap=0.05), signer=key,
                                batch=320)
            summary = uploader.run()
            receipts = s.receipt_counts()["receipts"]
    finally:
        uplink.close()
    assert (summary.left, summary.error) == (0, None)
    # the timed-out batch may still reach the collector (the kernel sends what it
    # took): its records then come back `duplicate`, with their receipts
    assert summary.accepted + summary.duplicate == 320
    assert uploader.batch <= 160  # and the next batches are as small
    assert counts() == {"pending": 0, "rejected": 0} and receipts == 320
    with collector.client() as http:
        stored = http.get("/api/v1/measurements", params={"key_id": key.key_id,
                                                          "limit": 1000}).json()["items"]
    assert sorted(r["measurement"]["id"] for r in stored) == sorted(r["id"] for r in records)


def test_a_non_collector_answer_keeps_the_records(collector: Collector) -> None:
    key = probe_key()
    spool(make_record(key))
    with pytest.raises(Unreachable, match="HTTP 404"):
        upload_and_report(collector.url + "/elsewhere", key, strict=True, backoff=FAST)
    assert counts()["pending"] == 1


def test_empty_spool(collector: Collector) -> None:
    probe_key()
    start = time.monotonic()
    result = cli("upload", "--collector", collector.url)
    assert result.returncode == 0
    assert "the spool is empty" in result.stderr
    assert time.monotonic() - start < 10


def test_a_poison_record_is_isolated_and_the_rest_uploads(collector: Collector) -> None:
    """A record the collector refuses even alone (here: over its body limit) is
    found by bisection and kept aside; every other record is stored once."""
    key = probe_key()
    assert cli("register", "--collector", collector.url).returncode == 0
    good = [make_record(key) for _ in range(40)]
    poison = make_record(key, evidence={"blob": "x" * (17 * 1024 * 1024)})
    spool(*good[:17], poison, *good[17:])
    result = cli("upload")
    assert result.returncode == 4, result.stderr  # records refused: not bad input
    assert "40 accepted, 0 duplicate, 1 rejected (1 body_too_large)" in result.stderr
    assert counts() == {"pending": 0, "rejected": 1}
    assert f"rejected {poison['id']}: refused:body_too_large" in cli("status").stdout
    with collector.client() as http:
        stored = http.get("/api/v1/measurements", params={"key_id": key.key_id,
                                                          "limit": 1000}).json()["items"]
    assert sorted(i["measurement"]["id"] for i in stored) == sorted(r["id"] for r in good)


def test_uploads_are_signed(collector: Collector) -> None:
    """The uploader signs its requests, so an unregistered probe is refused
    before the collector parses anything (401 unknown_key), and its records wait
    in the spool (a registration mishap: they go again, later or after `register`)."""
    key = probe_key()
    spool(*(make_record(key) for _ in range(3)))
    with pytest.raises(Unreachable, match="refused 3 records for now"):
        upload_and_report(collector.url, key, strict=True, backoff=FAST)
    assert counts() == {"pending": 3, "rejected": 0}
    with Spool(spool_path()) as waiting:
        assert {reason for _, reason, _, _ in waiting.waiting()} == {"unknown_key"}


def test_a_batch_is_the_spooled_records_as_one_json_array() -> None:
    records = [{"id": "a", "as_org": "اتصالات المغرب"}, {"id": "b", "n": [1, 2]}]
    spooled = [json.dumps(r, separators=(",", ":"), ensure_ascii=False).encode()
               for r in records]
    assert json.loads(_json_array(spooled)) == records
    assert _json_array(spooled) == b"[" + b",".join(spooled) + b"]"
    assert _json_array([]) == b"[]"


def test_a_rate_limited_registration_is_the_collectors_doing(tmp_path: Path) -> None:
    """429 (too many new keys from this address for now): not the user's input but
    the collector's state, exit status 4 as a 5xx, with when to try again."""
    env = {**os.environ, "VOIPWATCH_COLLECTOR_REGISTER_RATE_PER_HOUR": "1"}
    with Collector(tmp_path / "limited", None, [], env=env) as limited:
        assert cli("register", "--collector", limited.url).returncode == 0
        other = dict(os.environ, VOIPWATCH_HOME=str(tmp_path / "second-probe"))
        refused = subprocess.run([*probe_command(), "register", "--collector", limited.url],
                                 capture_output=True, text=True, timeout=120, env=other)
    assert refused.returncode == 4, refused.stderr
    assert "refused the registration (HTTP 429)" in refused.stderr
    assert re.search(r"; try again in \d+ s$", refused.stderr.strip()), refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_server_that_does_not_speak_http(tmp_path: Path) -> None:
    """The URL of something that is not an HTTP server: one sentence, exit 4, and
    what it sent never reaches the terminal."""
    from tests.probe.upload.test_client import not_http_server

    key = probe_key()
    spool(make_record(key))
    with not_http_server() as url:
        for args in (("register", "--collector", url),
                     ("setup", "--no-input", "--collector", url)):
            result = cli(*args)
            assert result.returncode == 4, result.stderr
            assert "something that is not HTTP" in result.stderr, result.stderr
            assert "GARBAGE" not in result.stderr and "Traceback" not in result.stderr
        # `upload` (retried with backoff: quickly here)
        with pytest.raises(Unreachable, match=r"something that is not HTTP.*1 records stay"):
            upload_and_report(url, key, strict=True, backoff=FAST)
    assert counts() == {"pending": 1, "rejected": 0}


def test_registering_into_a_config_that_cannot_be_written(collector: Collector,
                                                          voipwatch_home: Path) -> None:
    probe_key()
    (voipwatch_home / "probe.toml.tmp").mkdir()
    result = cli("register", "--collector", collector.url)
    assert result.returncode == 2, result.stderr
    assert f"cannot write the probe config {voipwatch_home / 'probe.toml'}: " in result.stderr
    assert "Traceback" not in result.stderr
    (voipwatch_home / "probe.toml.tmp").rmdir()  # fixed: registering again is harmless
    assert cli("register", "--collector", collector.url).returncode == 0
    assert load_config().collector == collector.url
