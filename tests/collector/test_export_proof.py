"""Complete exports: an export and its proof (the signed tree head and every
leaf) let `voipwatch-probe verify-export` check offline that the file holds
exactly the log's records for its filter; a record dropped, one added, or a
leaf rewritten is caught."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from probe.core.signing import ProbeKey
from tests.collector.conftest import make_record, register, unique_service
from tests.collector.harness import Collector
from tests.conftest import probe_command


def verify_export(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*probe_command(), "verify-export", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def stocked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Collector, str]]:
    with Collector(tmp_path_factory.mktemp("proof"), None, []) as running:
        key, service = ProbeKey.generate(), unique_service()
        with running.client() as http:
            register(http, key)
            records: list[dict[str, Any]] = []
            for i in range(12):
                records.append(make_record(key, service if i % 3 else "other",
                                           verdict="blocked" if i % 2 else "open",
                                           blocking="tcp.reset" if i % 2 else None))
            assert http.post("/api/v1/measurements", json=records).status_code == 200
        yield running, service


def test_a_cli_export_verifies_complete(stocked: tuple[Collector, str], tmp_path: Path) -> None:
    running, service = stocked
    out = tmp_path / "blocked.jsonl"
    made = running.cli("export", "--format", "jsonl", "--out", str(out), "--service", service,
                       "--verdict", "blocked")
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "blocked.jsonl.proof").exists()
    result = verify_export(str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "4 records, all signatures valid"
    assert f"filters service={service}, verdict=blocked among its first 12 entries" in lines[1]
    assert lines[3].startswith("dataset sha256: ")
    # the same export again: the same set, the same hash
    again = tmp_path / "again.jsonl"
    running.cli("export", "--format", "jsonl", "--out", str(again), "--service", service,
                "--verdict", "blocked", "--tree-size", "12")
    assert verify_export(str(again)).stdout.splitlines()[3] == lines[3]
    # `verify` finds the proof beside the file and checks completeness too
    plain = subprocess.run([*probe_command(), "verify", str(out)], capture_output=True,
                           text=True, timeout=60)
    assert plain.returncode == 0 and "complete: exactly" in plain.stdout


def test_dropped_added_or_rewritten_is_caught(stocked: tuple[Collector, str],
                                              tmp_path: Path) -> None:
    running, service = stocked
    out = tmp_path / "all.jsonl"
    assert running.cli("export", "--format", "jsonl", "--out", str(out), "--service",
                       service).returncode == 0
    lines = out.read_text().splitlines()
    proof = (tmp_path / "all.jsonl.proof").read_text().splitlines()

    dropped = tmp_path / "dropped.jsonl"
    dropped.write_text("\n".join(lines[1:]) + "\n")
    result = verify_export(str(dropped), "--proof", str(tmp_path / "all.jsonl.proof"))
    assert result.returncode == 3
    assert "1 records of the log match the filter but are not in the export" in result.stderr

    other = tmp_path / "other.jsonl"
    running.cli("export", "--format", "jsonl", "--out", str(other), "--service", "other",
                "--no-proof")
    added = tmp_path / "added.jsonl"
    added.write_text("\n".join(lines + other.read_text().splitlines()[:1]) + "\n")
    result = verify_export(str(added), "--proof", str(tmp_path / "all.jsonl.proof"))
    assert result.returncode == 3 and "is not among the log's records" in result.stderr

    # a collector hiding the dropped record by filing its leaf under another service
    hidden = json.loads(lines[0])["measurement"]["id"]
    forged = []
    for line in proof:
        entry = json.loads(line)
        if "leaf" in entry and entry["leaf"]["id"] == hidden:
            entry["leaf"]["service"] = "elsewhere"
        forged.append(json.dumps(entry))
    (tmp_path / "forged.proof").write_text("\n".join(forged) + "\n")
    result = verify_export(str(dropped), "--proof", str(tmp_path / "forged.proof"))
    assert result.returncode == 3 and "do not rebuild the signed head" in result.stderr

    wrong_key = verify_export(str(out), "--collector-key", ProbeKey.generate().public_b64)
    assert wrong_key.returncode == 3 and "signed by another key" in wrong_key.stderr


def test_an_http_export_and_its_proof(stocked: tuple[Collector, str], tmp_path: Path) -> None:
    running, service = stocked
    with running.client() as http:
        response = http.get("/api/v1/export", params={"format": "csv", "service": service})
        size = response.headers["X-Voipwatch-Tree-Size"]
        (tmp_path / "x.csv").write_text(response.text)
        proof = http.get("/api/v1/export/proof", params={"format": "csv", "service": service,
                                                         "tree_size": size})
        (tmp_path / "x.csv.proof").write_bytes(proof.content)
        key_id = http.get("/api/v1/collector").json()["key_id"]
        too_far = http.get("/api/v1/export", params={"tree_size": 10**6})
        assert too_far.status_code == 400
    result = verify_export(str(tmp_path / "x.csv"), "--collector-key", key_id)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "8 records" in result.stdout and "(the key id given)" in result.stdout


def test_redacted_records_keep_the_proofs_valid(tmp_path: Path) -> None:
    from probe.core import merkle
    from probe.core.evidence import head_hashes, hexes

    with Collector(tmp_path / "c", None, []) as running, running.client() as http:
        keep, leave = ProbeKey.generate(), ProbeKey.generate()
        for key in (keep, leave):
            register(http, key)
        records = [make_record(k, "svc") for k in (keep, leave, keep, leave, keep)]
        http.post("/api/v1/measurements", json=records)
        gone = running.cli("redact", "--key-id", leave.key_id, "--reason", "volunteer asked")
        assert gone.returncode == 0 and "deleted 2 records" in gone.stdout
        size, root = head_hashes(http.get("/api/v1/log/head").json())
        assert size == 5
        proof = http.get("/api/v1/log/inclusion", params={"index": 1, "tree_size": 5}).json()
        assert proof["redacted"] is True and proof["leaf"] is None
        assert merkle.verify_inclusion(1, 5, bytes.fromhex(proof["leaf_hash"]),
                                       hexes(proof["audit_path"]), root)
        kept = http.get("/api/v1/log/inclusion", params={"index": 2, "tree_size": 5}).json()
        assert merkle.verify_inclusion(2, 5, bytes.fromhex(kept["leaf_hash"]),
                                       hexes(kept["audit_path"]), root)
        out = tmp_path / "svc.jsonl"
        assert running.cli("export", "--format", "jsonl", "--out", str(out), "--service",
                           "svc").returncode == 0
    result = verify_export(str(out))
    assert result.returncode == 0, result.stdout
    assert "3 records" in result.stdout and "2 log entries were redacted" in result.stdout
    again = running.cli("redact", "--key-id", leave.key_id)
    assert again.returncode == 2 and "no records of key" in again.stderr


def test_an_ooni_format_export_verifies_complete(stocked: tuple[Collector, str],
                                                 tmp_path: Path) -> None:
    running, service = stocked
    out = tmp_path / "x.ooni.jsonl"
    made = running.cli("export", "--format", "ooni", "--out", str(out), "--service", service)
    assert made.returncode == 0, made.stderr
    result = verify_export(str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("8 records, all signatures valid\ncomplete: exactly")


def test_an_export_at_a_past_size_needs_a_kept_head(tmp_path: Path) -> None:
    """An export proves itself against a signed head the collector kept: the
    current size's (kept once per size, as /api/v1/log/head keeps it), or a past
    one from /api/v1/log/heads. No client makes it sign and keep a head for
    each past size it names."""
    with Collector(tmp_path / "c", None, []) as running, running.client() as http:
        key = ProbeKey.generate()
        register(http, key)
        for _ in range(3):  # three sizes: 2, 4, 6
            http.post("/api/v1/measurements", json=[make_record(key, "svc") for _ in range(2)])
        export = http.get("/api/v1/export", params={"service": "svc"})
        size = int(export.headers["X-Voipwatch-Tree-Size"])
        assert size == 6
        (tmp_path / "x.jsonl").write_text(export.text)
        http.post("/api/v1/measurements", json=[make_record(key, "svc")])  # the log grows
        proof = http.get("/api/v1/export/proof", params={"service": "svc", "tree_size": size})
        assert proof.status_code == 200, proof.text
        (tmp_path / "x.jsonl.proof").write_bytes(proof.content)
        kept = [h["tree_size"] for h in http.get("/api/v1/log/heads").json()["items"]]
        for past in (1, 2, 3, 5):
            refused = http.get("/api/v1/export/proof", params={"tree_size": past})
            assert (refused.status_code, refused.json()["error"]) == (400, "bad_range")
            assert "/api/v1/log/heads" in refused.json()["detail"]
            assert http.get("/api/v1/export", params={"tree_size": past}).status_code == 400
        assert [h["tree_size"] for h in http.get("/api/v1/log/heads").json()["items"]] == kept
        assert http.get("/api/v1/export/proof", params={"tree_size": size}).status_code == 200
        assert http.get("/api/v1/log/heads", params={"after": 10**30}).status_code == 422
    result = verify_export(str(tmp_path / "x.jsonl"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 records" in result.stdout


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_the_proof_beside_a_file_or_a_pipe(stocked: tuple[Collector, str], tmp_path: Path,
                                                fmt: str) -> None:
    """The same proof to stdout with `--proof FILE` as beside a file; a proof
    that cannot be written is one sentence, exit 2, before the export starts,
    with no part of either left behind."""
    running, service = stocked
    out = tmp_path / f"x.{fmt}"
    assert running.cli("export", "--format", fmt, "--out", str(out), "--service",
                       service).returncode == 0
    piped = subprocess.run([running.program, "export", "--format", fmt, "--out", "-",
                            "--proof", str(tmp_path / "piped.proof"), "--service", service,
                            *running.db_args], capture_output=True, timeout=120)
    assert piped.returncode == 0, piped.stderr
    assert (tmp_path / "piped.proof").read_bytes() == (tmp_path / f"x.{fmt}.proof").read_bytes()
    if fmt == "jsonl":
        assert piped.stdout == out.read_bytes()
        assert verify_export(str(out), "--proof", str(tmp_path / "piped.proof")).returncode == 0
    else:
        import io

        import pyarrow.parquet as pq

        assert pq.read_table(io.BytesIO(piped.stdout)).num_rows == pq.read_table(out).num_rows == 8
    nowhere = tmp_path / "missing" / "p.proof"
    failed = running.cli("export", "--format", fmt, "--out", str(tmp_path / f"y.{fmt}"),
                         "--proof", str(nowhere))
    assert failed.returncode == 2 and f"cannot write --proof {nowhere}" in failed.stderr
    assert "Traceback" not in failed.stderr and not (tmp_path / "missing").exists()
    assert not list(tmp_path.glob("y.*"))  # said before the export started: none written
