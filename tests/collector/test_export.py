"""Round trip: a probe run against real servers on loopback, uploaded to the
collector, exported as JSONL, CSV and Parquet (command and HTTP route), and
every exported record re-verified offline with `voipwatch-probe verify`."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq

from probe.core.signing import ProbeKey
from tests.collector.conftest import make_record, register, unique_service
from tests.collector.harness import Collector
from tests.conftest import probe_command
from tests.support.pki import TestCA
from tests.support.tcp_servers import closed_port, tcp_server


async def probe(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*probe_command(), *args, env=env,
                                                stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def rebuild_jsonl(rows: list[dict[str, Any]], path: Path) -> Path:
    """What a researcher does with a CSV or Parquet export: the `measurement`
    column is the signed JSON text, `public_key` the key to check it with."""
    with path.open("w") as handle:
        for row in rows:
            handle.write(json.dumps({"measurement": json.loads(row["measurement"]),
                                     "public_key": row["public_key"]}) + "\n")
    return path


async def verify(path: Path) -> str:
    code, out, err = await probe("verify", str(path), env=dict(os.environ))
    assert code == 0, out + err
    return out


async def test_run_upload_export_verify(collector: Collector, tmp_path: Path,
                                        voipwatch_home: Path) -> None:
    ca = TestCA(tmp_path)
    service = unique_service()
    async with tcp_server() as tcp_port, \
            tcp_server(ssl_context=ca.issue("chat.test").server_context()) as tls_port:
        catalogue = tmp_path / "catalogue.yaml"
        catalogue.write_text(f"""\
version: 1
services:
  - id: {service}
    name: Round trip
    endpoints:
      - {{check: tcp, host: 127.0.0.1, port: {tcp_port}, role: messaging}}
      - {{check: tls, host: 127.0.0.1, port: {tls_port}, sni: chat.test, role: messaging}}
      - {{check: tcp, host: 127.0.0.1, port: {closed_port()}, role: call}}
""")
        env = dict(os.environ, SSL_CERT_FILE=str(ca.path))
        code, out, err = await probe("register", "--collector", collector.url, env=env)
        assert code == 0, err
        key_id = out.strip()
        code, out, err = await probe("run", "--catalogue", str(catalogue), "--json",
                                     "--link-type", "cellular", env=env)
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 3
    assert "3 accepted, 0 duplicate, 0 rejected; 0 left in the spool" in err
    # the collector was the control: the closed port is closed from there too
    closed = next(r for r in records if r["endpoint"]["role"] == "call")
    assert closed["evidence"]["control"]["state"] == "failed"
    assert closed["verdict"] == "inconclusive"

    ids = sorted(r["id"] for r in records)
    for fmt in ("jsonl", "csv", "parquet"):
        path = tmp_path / f"export.{fmt}"
        result = collector.cli("export", "--format", fmt, "--out", str(path),
                               "--key-id", key_id)
        assert result.returncode == 0, result.stderr
        if fmt == "jsonl":
            rows = [json.loads(line) for line in path.read_text().splitlines()]
            verified = await verify(path)  # the proof beside it: completeness checked too
            assert verified.startswith("3 records, all signatures valid\ncomplete: exactly")
            assert sorted(r["measurement"]["id"] for r in rows) == ids
            assert all(r["public_key"] == records[0]["probe"]["public_key"] for r in rows)
            assert {r["measurement"]["network"]["link_type"] for r in rows} == {"cellular"}
            assert all(r["probe_cc"] is None and "probe_ip" not in r for r in rows)  # loopback
            continue
        if fmt == "csv":
            table = list(csv.DictReader(path.open(newline="")))
        else:
            table = pq.read_table(path).to_pylist()
        assert sorted(r["id"] for r in table) == ids
        assert {r["service"] for r in table} == {service}
        assert all(r["probe_ip"] in (None, "") for r in table)
        rebuilt = rebuild_jsonl(table, tmp_path / f"rebuilt-{fmt}.jsonl")
        assert await verify(rebuilt) == "3 records, all signatures valid\n"

    async with httpx.AsyncClient(base_url=collector.url, timeout=30) as http:
        for fmt in ("jsonl", "csv", "parquet"):
            response = await http.get("/api/v1/export", params={"format": fmt,
                                                                 "service": service})
            assert response.status_code == 200
            path = tmp_path / f"http.{fmt}"
            path.write_bytes(response.content)
            if fmt == "jsonl":
                assert await verify(path) == "3 records, all signatures valid\n"
            elif fmt == "csv":
                assert len(list(csv.DictReader(io.StringIO(response.text)))) == 3
            else:
                assert pq.read_table(path).num_rows == 3


def test_large_export_is_streamed_in_chunks(http: httpx.Client, collector: Collector,
                                            tmp_path: Path) -> None:
    key, service = ProbeKey.generate(), unique_service()
    register(http, key)
    records = [make_record(key, service) for _ in range(4100)]
    for start in range(0, len(records), 1000):
        response = http.post("/api/v1/measurements", json=records[start:start + 1000])
        assert {r["status"] for r in response.json()["results"]} == {"accepted"}
    path = tmp_path / "big.parquet"
    assert collector.cli("export", "--format", "parquet", "--out", str(path),
                         "--service", service).returncode == 0
    parquet = pq.ParquetFile(path)
    assert parquet.metadata.num_rows == 4100
    # groups of 32,768 rows, written as they fill (test_export_sqlite.py: streamed)
    assert parquet.num_row_groups == 1
    assert parquet.read(columns=["id"]).column("id").to_pylist() == [r["id"] for r in records]
    lines = http.get("/api/v1/export", params={"service": service}).text.splitlines()
    assert len(lines) == 4100
    assert [json.loads(line)["measurement"]["id"] for line in lines] == [
        r["id"] for r in records]


def test_query_filters_and_paging(http: httpx.Client) -> None:
    key, service = ProbeKey.generate(), unique_service()
    register(http, key)
    blocked = [make_record(key, service, verdict="blocked", blocking="tcp.reset")
               for _ in range(3)]
    opened = [make_record(key, service, network={"link_type": "wifi"}) for _ in range(4)]
    http.post("/api/v1/measurements", json=blocked + opened)
    page = http.get("/api/v1/measurements", params={"service": service, "limit": 5}).json()
    assert len(page["items"]) == 5 and page["next_cursor"]
    rest = http.get("/api/v1/measurements", params={"service": service, "limit": 5,
                                                    "cursor": page["next_cursor"]}).json()
    assert len(rest["items"]) == 2 and rest["next_cursor"] is None
    found = http.get("/api/v1/measurements", params={"service": service,
                                                      "verdict": "blocked"}).json()["items"]
    assert sorted(i["measurement"]["id"] for i in found) == sorted(r["id"] for r in blocked)
    wifi = http.get("/api/v1/measurements", params={"service": service, "link_type": "wifi"})
    assert len(wifi.json()["items"]) == 4
    future = http.get("/api/v1/measurements", params={"service": service,
                                                       "since": "2999-01-01T00:00:00Z"})
    assert future.json() == {"items": [], "next_cursor": None}
    for bad in ({"verdict": "maybe"}, {"cursor": "abc"}, {"since": "2020-01-01T00:00:00"},
                {"cc": "Morocco"}, {"limit": 0}):
        response = http.get("/api/v1/measurements", params=bad)
        assert response.status_code in (400, 422), (bad, response.status_code)
        assert "error" in response.json()


def test_health_openapi_and_results_page(http: httpx.Client) -> None:
    key, service = ProbeKey.generate(), unique_service()
    register(http, key)
    http.post("/api/v1/measurements", json=[
        make_record(key, service, verdict="blocked", blocking="tcp.reset"),
        make_record(key, service, endpoint={"check": "tcp", "host": "198.51.100.1",
                                            "port": 443, "transport": "tcp",
                                            "role": "call"})])
    health = http.get("/healthz").json()
    assert health["status"] == "ok" and health["service"] == "voipwatch-collector"
    paths = http.get("/openapi.json").json()["paths"]
    assert {"/api/v1/probes", "/api/v1/measurements", "/api/v1/export", "/api/v1/control",
            "/healthz", "/"} <= set(paths)
    page = http.get("/")
    assert page.headers["content-type"].startswith("text/html")
    assert "<script" not in page.text and "http://" not in page.text
    # the dashboard's matrix (docs/dashboard.md): the service's calls, blocked, and how
    row = next(line for line in page.text.split("<tr>") if f">{service} <" in line)
    assert "calls" in row and 'class="cell v-blocked"' in row and "tcp.reset" in row
