"""`export --format ooni`: each record as an OONI measurement (base data
format 0.2.0), its signature kept (verify re-checks it), and loadable by
OONI's own Python tools (oonidata, in a virtualenv of its own: it pins
`cryptography` 38, which the probe cannot use)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from collector.ooni import measurement
from probe.core.record import rfc3339, utcnow
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
