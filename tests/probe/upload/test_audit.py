"""`voipwatch-probe audit` against a real collector: the probe's records are in
the log as receipted and the log only grew; a rewritten history (two signed
heads that do not extend one another) or a leaf changed behind the probe's back
fails the audit and leaves the evidence on disk."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

from collector.identity import load_or_create
from probe.core.evidence import sign_object
from probe.core.record import rfc3339, utcnow
from probe.core.signing import ProbeKey, write_key
from probe.store.spool import Spool
from probe.store.state import audit_path, ensure_home, key_path, spool_path
from tests.collector.conftest import make_record
from tests.collector.harness import Collector
from tests.conftest import probe_command


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*probe_command(), *args], capture_output=True, text=True,
                          timeout=120)


def spool_and_upload(key: ProbeKey, count: int) -> None:
    with Spool(spool_path()) as s:
        for _ in range(count):  # the link as a probe of this release states it
            s.add(make_record(key, network={"link_type": "wifi", "upstream": "fixed",
                                            "upstream_source": "asn",
                                            "upstream_confidence": "medium"}))
    result = cli("upload")
    assert result.returncode == 0, result.stderr


def setup_probe(running: Collector) -> ProbeKey:
    key = ProbeKey.generate()
    ensure_home()
    write_key(key, key_path())
    assert cli("register", "--collector", running.url).returncode == 0
    return key


def test_audit_checks_inclusion_and_growth(tmp_path: Path) -> None:
    with Collector(tmp_path / "c", None, []) as running:
        key = setup_probe(running)
        spool_and_upload(key, 5)
        first = cli("audit")
        assert first.returncode == 0, first.stdout + first.stderr
        assert "first audit" in first.stdout
        assert "5 records checked: each in the log, as signed" in first.stdout
        spool_and_upload(key, 3)
        second = cli("audit")
        assert second.returncode == 0, second.stdout
        assert "the log only grew since" in second.stdout
        assert "3 records checked" in second.stdout  # the earlier five were audited already
        with Spool(spool_path()) as s:
            assert s.receipt_counts() == {"receipts": 8, "audited": 8}
        status = cli("status", "--offline").stdout
        assert "8 of them audited" in status
        assert "log audit:       the collector's log verified at 8 entries" in status


def test_a_rewritten_log_fails_the_audit(tmp_path: Path) -> None:
    with Collector(tmp_path / "c", None, []) as running:
        key = setup_probe(running)
        spool_and_upload(key, 4)
        # the probe once saw a head (really signed by this collector) that the log
        # does not extend: another history was shown to someone
        collector_key = load_or_create(tmp_path / "c")
        forged = sign_object({"tree_size": 2, "root_hash": "ab" * 32,
                              "timestamp": rfc3339(utcnow())}, collector_key.key_id,
                             collector_key.sign)
        audit_path().write_text(json.dumps({running.url: forged}))
        result = cli("audit")
        assert result.returncode == 3
        assert "AUDIT FAILED: the log of 4 entries does not extend the one of 2" in result.stderr
        evidence = list(audit_path().parent.glob("audit-evidence-*.json"))
        assert len(evidence) == 1 and json.loads(evidence[0].read_text())["earlier"] == forged
        assert json.loads(audit_path().read_text())[running.url] == forged  # kept as it was


def test_a_changed_leaf_fails_the_audit(tmp_path: Path) -> None:
    with Collector(tmp_path / "c", None, []) as running:
        key = setup_probe(running)
        spool_and_upload(key, 3)
    db = sqlite3.connect(tmp_path / "c" / "collector.sqlite3")
    # the operator files one record as `blocked` behind everyone's back
    db.execute("UPDATE measurements SET verdict = 'blocked' WHERE log_index = 1")
    db.commit()
    db.close()
    with running:  # started again on the same port and data (the context manager starts it)
        result = cli("audit")
    assert result.returncode == 3
    # leaf 1 changed: its own proof fails, and so does its neighbour's, which hashes it
    assert "2 of this probe's records are not in the log as receipted" in result.stderr
    assert "no valid inclusion proof at index 1" in result.stderr
    assert "no valid inclusion proof at index 0" in result.stderr


def test_audit_needs_a_registration() -> None:
    ensure_home()
    result = cli("audit", "--collector", "http://127.0.0.1:9")
    assert result.returncode == 2 and "run `voipwatch-probe register" in result.stderr
