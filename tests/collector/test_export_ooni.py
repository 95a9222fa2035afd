"""`export --format ooni`: each record as an OONI measurement (base data
format 0.2.0), its signature kept (verify re-checks it), and loadable by
OONI's own Python tools (oonidata, in a virtualenv of its own: it pins
`cryptography` 38, which the probe cannot use)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from collector.ooni import lines, measurement
from probe.core.record import Measurement, rfc3339, utcnow
from probe.core.signing import ProbeKey
from probe.upload.verify import check_line
from tests.collector.conftest import make_record, register, unique_service
from tests.collector.harness import Collector
from tests.conftest import in_ci, probe_command

ROOT = Path(__file__).resolve().parents[2]
# OONI spec, data-formats/df-000-base.md: the keys every measurement has
BASE_KEYS = {"annotations", "data_format_version", "input", "measurement_start_time",
             "probe_asn", "probe_cc", "probe_ip", "report_id", "software_name",
             "software_version", "test_keys", "test_name", "test_runtime", "test_start_time",
             "test_version"}


def blocked_stun(key: ProbeKey, service: str = "whatsapp",
                 started_at: str = "2016-01-07T09:30:00.250Z") -> dict[str, Any]:
    return make_record(
        key, service, started_at=started_at, runtime_ms=5120,
        network={"link_type": "cellular", "cc": "MA", "asn": 36884, "as_org": "Maroc Telecom",
                 "resolver_asn": 36884, "attribution": "control"},
        endpoint={"check": "stun", "host": "stun.example.net", "port": 3478,
                  "transport": "udp", "role": "call"},
        verdict="blocked", blocking="stun.no_response",
        evidence={"status": "failed", "failure": "generic_timeout_error",
                  "suspected": "stun.no_response", "rule": "fails_where_control_works",
                  "check_version": "1", "rtt_ms": None, "loss": 0.25})


def test_a_record_maps_to_the_base_data_format() -> None:
    key = ProbeKey.generate()
    record = blocked_stun(key)
    added = {"received_at": "2016-01-07T10:00:00.000Z", "probe_cc": "FR", "probe_asn": 3215,
             "probe_as_org": "Orange", "public_key": key.public_b64, "key_revoked_at": None}
    ooni = measurement(record, added)
    assert set(ooni) >= BASE_KEYS
    assert ooni["test_name"] == "voipwatch_stun" and ooni["data_format_version"] == "0.2.0"
    assert ooni["measurement_start_time"] == ooni["test_start_time"] == "2016-01-07 09:30:00"
    # the network at measurement time (signed), not where the record was uploaded from
    assert (ooni["probe_cc"], ooni["probe_asn"], ooni["probe_network_name"]) == (
        "MA", "AS36884", "Maroc Telecom")
    assert ooni["resolver_asn"] == "AS36884" and ooni["probe_ip"] == "127.0.0.1"
    assert ooni["input"] == "stun://stun.example.net:3478?transport=udp"
    assert ooni["test_runtime"] == 5.12 and ooni["software_name"] == "voipwatch-probe"
    assert ooni["report_id"].startswith("20160107T093000Z_voipwatch_stun_MA_36884_n1_")
    assert all(isinstance(v, str) for v in ooni["annotations"].values())
    assert ooni["annotations"]["network_type"] == "mobile"
    keys = ooni["test_keys"]
    assert (keys["failure"], keys["accessible"], keys["blocking"], keys["verdict"]) == (
        "generic_timeout_error", False, "stun.no_response", "blocked")
    assert keys["evidence"] == record["evidence"] and "evidence" not in keys["voipwatch_record"]
    assert keys["voipwatch_record"]["signature"] == record["signature"]
    # the signature still verifies, the evidence put back
    check_line(json.dumps(ooni))
    tampered = json.loads(json.dumps(ooni))
    tampered["test_keys"]["evidence"]["loss"] = 0.0
    with pytest.raises(Exception, match="signature"):
        check_line(json.dumps(tampered))


def test_open_and_inconclusive_as_ooni_says_them() -> None:
    key = ProbeKey.generate()
    opened = measurement(make_record(key), {})
    assert (opened["test_keys"]["accessible"], opened["test_keys"]["blocking"]) == (True, False)
    assert (opened["probe_cc"], opened["probe_asn"]) == ("ZZ", "AS0")  # unknown
    unsure = measurement(make_record(key, verdict="inconclusive"), {"probe_cc": "MA",
                                                                     "probe_asn": 6713})
    assert unsure["test_keys"]["accessible"] is None and unsure["test_keys"]["blocking"] is None
    assert (unsure["probe_cc"], unsure["probe_asn"]) == ("MA", "AS6713")


async def test_export_command_and_route_write_ooni_measurements(
        collector: Collector, http: httpx.Client, tmp_path: Path) -> None:
    key = ProbeKey.generate()
    register(http, key)
    service = unique_service()
    # the collector refuses records older than its age limit: one made now
    records = [blocked_stun(key, service, rfc3339(utcnow())), make_record(key, service)]
    response = http.post("/api/v1/measurements", json=records)
    assert [r["status"] for r in response.json()["results"]] == ["accepted", "accepted"]
    path = tmp_path / "ooni.jsonl"
    result = collector.cli("export", "--format", "ooni", "--out", str(path),
                           "--key-id", key.key_id)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert sorted(m["test_name"] for m in lines) == ["voipwatch_stun", "voipwatch_tcp"]
    assert all(set(m) >= BASE_KEYS for m in lines)
    verify = subprocess.run([*probe_command(), "verify", str(path)], capture_output=True,
                            text=True, check=False)
    assert verify.returncode == 0 and "2 records, all signatures valid" in verify.stdout
    routed = http.get("/api/v1/export", params={"format": "ooni", "service": service})
    assert routed.status_code == 200
    assert len(routed.text.splitlines()) == 2
    assert "ooni.jsonl" in routed.headers["content-disposition"]


def ooni_python() -> Path:
    """A virtualenv with OONI's own `oonidata` (var/ooni-venv, made once)."""
    venv = ROOT / "var" / "ooni-venv"
    python = venv / "bin" / "python"
    if not (venv / ".installed").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        installed = subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                                    "--disable-pip-version-check", "oonidata"],
                                   capture_output=True, text=True, check=False)
        if installed.returncode != 0:
            if in_ci():
                pytest.fail(f"oonidata did not install: {installed.stderr[-500:]}")
            pytest.skip("oonidata does not install here")
        (venv / ".installed").touch()
    return python


LOAD = """
import json, sys
from oonidata.dataclient import load_measurement
for line in open(sys.argv[1]):
    m = load_measurement(json.loads(line))
    print(type(m).__name__, m.test_name, m.probe_cc, m.probe_asn, m.measurement_start_time)
"""


def test_oonis_own_loader_reads_the_export(tmp_path: Path) -> None:
    key = ProbeKey.generate()
    path = tmp_path / "ooni.jsonl"
    path.write_text("".join(json.dumps(measurement(r, {})) + "\n" for r in (
        blocked_stun(key), make_record(key))))
    python = ooni_python()
    result = subprocess.run([str(python), "-c", LOAD, str(path)], capture_output=True,
                            text=True, check=False, env={**os.environ, "PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[0] == (
        "BaseMeasurement voipwatch_stun MA AS36884 2016-01-07 09:30:00")
    assert result.stdout.splitlines()[1].startswith("BaseMeasurement voipwatch_tcp ZZ AS0 ")


def legacy_row(record: dict[str, Any], filed_at: datetime, **extra: Any) -> Any:
    """A stored row as the export reads it (collector/store.py's stream)."""
    return SimpleNamespace(id=record["id"], record=json.dumps(record), started_at=filed_at,
                           received_at=filed_at, cc=None, asn=None, as_org=None,
                           public_key=extra.get("public_key"), key_revoked_at=None)


def test_records_stored_before_the_strict_check_are_still_exported(
        caplog: pytest.LogCaptureFixture) -> None:
    """A collector before the ingest check took started_at as a Unix time and
    any nesting: one such record ended the whole OONI export."""
    key = ProbeKey.generate()
    filed = datetime(2026, 11, 29, 13, 13, 36, tzinfo=UTC)
    good = blocked_stun(key)
    digits = make_record(key, started_at="1795958016")
    number = make_record(key, started_at=1795958016)
    deep = make_record(key, evidence={"d": nested(260)})  # orjson writes 255 levels at most
    broken = make_record(key, started_at="1795958017")
    rows = [legacy_row(r, filed, public_key=key.public_b64)
            for r in (good, digits, number, broken, deep)]
    rows[3].started_at = None  # no filed time either: it cannot be mapped at all
    with caplog.at_level("WARNING", logger="collector.ooni"):
        out = b"".join(lines([rows[:2], rows[2:]]))
    got = [json.loads(line) for line in out.decode().splitlines()]
    assert [m["test_keys"]["voipwatch_record"]["id"] for m in got] == [
        good["id"], digits["id"], number["id"], deep["id"]]
    assert got[0]["measurement_start_time"] == "2016-01-07 09:30:00"
    assert "voipwatch_started_at" not in got[0]["annotations"]
    for legacy in got[1:3]:  # the time the collector filed it under, said so
        assert legacy["measurement_start_time"] == "2026-11-29 13:13:36"
        assert legacy["annotations"]["voipwatch_started_at"] == "collector"
    for line in out.decode().splitlines():  # every signature still verifies
        check_line(line)
    assert "1 records left out" in caplog.text and broken["id"] in caplog.text
    with pytest.raises(ValueError, match="RFC 3339"):  # no filed time to fall back on
        measurement(digits, {})


def nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


class LaxMeasurement(Measurement):
    """The record model before ingest held started_at to RFC 3339 strings."""

    started_at: datetime


async def test_a_store_holding_such_records_exports_and_verify_says_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Records a collector accepted before the check: the OONI export (route and
    command) keeps every record, verify-export names the record's started_at as
    the problem (exit 3), never an internal error, and exports without them verify."""
    import collector.ingest
    from collector.app import create_app
    from collector.settings import Settings

    monkeypatch.setattr(collector.ingest, "Measurement", LaxMeasurement)
    monkeypatch.setattr(collector.ingest, "deeper_than", lambda value, limit=0: False)
    honest, censor = ProbeKey.generate(), ProbeKey.generate()
    now = int(utcnow().timestamp())
    poisoned = [make_record(censor, started_at=str(now)), make_record(censor, started_at=now),
                make_record(censor, evidence={"d": nested(260)})]
    records = [make_record(honest), *poisoned, make_record(honest)]
    data_dir = tmp_path / "data"
    app = create_app(Settings(data_dir=data_dir, geoip_builtin=False))
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1") as client:
        for key in (honest, censor):
            registered = await client.post("/api/v1/probes", json={"public_key": key.public_b64})
            assert registered.status_code == 201
        response = await client.post("/api/v1/measurements", json=records)
        assert [r["status"] for r in response.json()["results"]] == ["accepted"] * 5
        routed = await client.get("/api/v1/export", params={"format": "ooni"})
        assert routed.status_code == 200 and len(routed.text.splitlines()) == 5
    stored = Collector(data_dir)
    ooni_path, jsonl_path = tmp_path / "all.ooni.jsonl", tmp_path / "all.jsonl"
    for fmt, path in (("ooni", ooni_path), ("jsonl", jsonl_path)):
        made = stored.cli("export", "--format", fmt, "--out", str(path))
        assert made.returncode == 0, made.stderr
    ids = [json.loads(line)["test_keys"]["voipwatch_record"]["id"]
           for line in ooni_path.read_text().splitlines()]
    assert ids == [r["id"] for r in records]
    for path in (ooni_path, jsonl_path):
        verify = subprocess.run([*probe_command(), "verify-export", str(path)],
                                capture_output=True, text=True, check=False, timeout=120)
        output = verify.stdout + verify.stderr
        assert verify.returncode == 3, output
        assert "internal error" not in output
        assert (f"started_at '{now}' in the record is not an RFC 3339 time with a time zone"
                in output)
        assert f"started_at {now} in the record is not an RFC 3339 time" in output
        assert poisoned[2]["id"] not in output  # the deep one verifies
    clean = tmp_path / "honest.jsonl"
    made = stored.cli("export", "--format", "ooni", "--out", str(clean), "--key-id",
                      honest.key_id)
    assert made.returncode == 0, made.stderr
    verify = subprocess.run([*probe_command(), "verify-export", str(clean)],
                            capture_output=True, text=True, check=False, timeout=120)
    assert verify.returncode == 0 and "2 records, all signatures valid" in verify.stdout
