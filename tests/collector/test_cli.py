"""`voipwatch-collector` commands: tokens, probes, migrate, and user errors
(exit status 2, one sentence, no traceback)."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from probe.core.signing import ProbeKey
from tests.collector.harness import COLLECTOR, Collector


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([COLLECTOR, *args], capture_output=True, text=True, timeout=60)


def assert_user_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("voipwatch-collector: error: ")


def test_enrollment_tokens(tmp_path: Path) -> None:
    collector = Collector(tmp_path / "c", None, ["--require-token"])
    token = collector.cli("token", "create", "--uses", "1", check=True).stdout.strip()
    assert token.startswith("vwt_")
    first, second, third = (ProbeKey.generate() for _ in range(3))
    with collector, httpx.Client(base_url=collector.url) as http:
        missing = http.post("/api/v1/probes", json={"public_key": first.public_b64})
        assert (missing.status_code, missing.json()["error"]) == (401, "token_required")
        wrong = http.post("/api/v1/probes", json={"public_key": first.public_b64,
                                                  "token": "vwt_nope"})
        assert (wrong.status_code, wrong.json()["error"]) == (403, "bad_token")
        ok = http.post("/api/v1/probes", json={"public_key": first.public_b64, "token": token})
        assert ok.status_code == 201 and ok.json() == {"key_id": first.key_id}
        again = http.post("/api/v1/probes", json={"public_key": first.public_b64})
        assert again.status_code == 200  # a known key needs no token
        used_up = http.post("/api/v1/probes", json={"public_key": second.public_b64,
                                                    "token": token})
        assert used_up.json()["error"] == "bad_token"
        bad_key = http.post("/api/v1/probes", json={"public_key": "AAAA"})
        assert (bad_key.status_code, bad_key.json()["error"]) == (400, "bad_public_key")
        extra = http.post("/api/v1/probes", json={"public_key": third.public_b64, "x": 1})
        assert extra.status_code == 422
    listing = collector.cli("probes", "list", check=True).stdout
    assert first.key_id in listing and second.key_id not in listing


def test_user_errors(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    assert_user_error(run("serve", *data, "--db", "mysql://x/y"), "unsupported database")
    unreachable = run("serve", *data, "--db", "postgresql://u@127.0.0.1:1/x")
    assert unreachable.returncode == 4  # a database server that does not answer: not bad input
    assert "cannot open the database" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr
    assert_user_error(run("serve", *data, "--geoip-asn", str(tmp_path / "none.mmdb")),
                      "--geoip-asn")
    (tmp_path / "bad.mmdb").write_bytes(b"not a database")
    assert_user_error(run("serve", *data, "--geoip-country", str(tmp_path / "bad.mmdb")),
                      "not a readable MaxMind .mmdb file")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        assert_user_error(run("serve", *data, "--port", port), f"cannot listen on "
                          f"127.0.0.1:{port}: Address already in use")
    assert_user_error(run("serve", *data, "--resolver", "nope"), "--resolver 'nope'")
    assert_user_error(run("probes", "revoke", "abc", *data), "no probe with key id 'abc'")
    assert_user_error(run("export", *data, "--format", "jsonl", "--out", "-", "--verdict",
                          "maybe"), "--verdict 'maybe': expected one of")
    assert_user_error(run("export", *data, "--format", "csv", "--out", "-", "--since",
                          "yesterday"), "--since 'yesterday': expected an RFC 3339 time")
    assert_user_error(run("export", *data, "--format", "csv", "--out",
                          str(tmp_path / "no" / "dir" / "x.csv")), "cannot write --out")
    assert_user_error(run("token", "create", *data, "--uses", "0"), "--uses 0")
    (tmp_path / "bad.toml").write_text("port = 'x'\n")
    assert_user_error(run("serve", *data, "--config", str(tmp_path / "bad.toml")),
                      "bad.toml: port: Input should be a valid integer")
    assert run("serve", "--bogus").returncode == 2  # argparse's own usage error


def test_migrate_and_empty_export(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    result = run("migrate", *data)
    from alembic.script import ScriptDirectory

    from collector.db.migrate import MIGRATIONS

    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()  # the newest migration
    assert result.returncode == 0 and f"schema at revision {head}" in result.stdout
    out = tmp_path / "empty.jsonl"
    assert run("export", *data, "--format", "jsonl", "--out", str(out)).returncode == 0
    assert out.read_text() == ""
    header = run("export", *data, "--format", "csv", "--out", "-").stdout
    assert header.startswith("id,started_at,received_at,service,check,role,")
    assert "no probes registered" in run("probes", "list", *data).stdout


def test_a_store_from_a_newer_release_is_left_alone(tmp_path: Path) -> None:
    """A store migrated by a newer collector (e.g. after a rollback of the
    package): every command says so in one sentence and changes nothing."""
    import sqlite3

    data = ["--data-dir", str(tmp_path / "data")]
    assert run("migrate", *data).returncode == 0
    store = tmp_path / "data" / "collector.sqlite3"
    with sqlite3.connect(store) as db:
        db.execute("UPDATE alembic_version SET version_num = 'from_a_newer_release'")
    for command in (["migrate"], ["serve"], ["probes", "list"],
                    ["export", "--format", "jsonl", "--out", "-"]):
        assert_user_error(run(*command, *data), "holds schema revision "
                          "'from_a_newer_release', written by a newer voipwatch-collector")
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [
            ("from_a_newer_release",)]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migrations_match_the_tables(backend: str, request: pytest.FixtureRequest,
                                     tmp_path: Path) -> None:
    """The Alembic history builds exactly the schema collector/db/schema.py declares."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from collector.db.engine import make_engine
    from collector.db.migrate import upgrade
    from collector.db.schema import metadata
    from tests.collector.conftest import database_url

    engine = make_engine(database_url(backend, request) or f"sqlite:///{tmp_path}/m.db")
    upgrade(engine)

    def declared_here(obj: object, name: str | None, type_: str, reflected: bool,
                      compare_to: object) -> bool:
        """Whether schema.py declares `obj` for this database (Index.ddl_if)."""
        condition = getattr(obj, "_ddl_if", None)
        return condition is None or condition.dialect in (None, backend)

    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(
            conn, opts={"include_object": declared_here}), metadata)
        if backend == "sqlite":  # tables stored in key order, as declared
            clustered = {name for (name,) in conn.exec_driver_sql(
                "SELECT name FROM sqlite_schema WHERE type = 'table' AND "
                "sql LIKE '%WITHOUT ROWID%'")}
            indexes = {name for (name,) in conn.exec_driver_sql(
                "SELECT name FROM sqlite_schema WHERE type = 'index'")}
    engine.dispose()
    assert diff == []
    if backend == "sqlite":
        assert clustered == {table.name for table in metadata.tables.values()
                             if table.dialect_options["sqlite"]["with_rowid"] is False}
        assert "dash_unit_period" not in indexes  # the clustered table is that index


def test_several_workers_share_the_settings(tmp_path: Path) -> None:
    import json

    from probe.core.auth import sign_request

    config = tmp_path / "collector.toml"
    config.write_text("max_batch = 3\n")
    key = ProbeKey.generate()
    with Collector(tmp_path / "c", None, ["--workers", "2", "--no-control", "--config",
                                          str(config)]) as collector, \
            httpx.Client(base_url=collector.url) as http:
        assert http.post("/api/v1/probes", json={"public_key": key.public_b64}).status_code == 201
        for _ in range(4):  # whichever worker answers
            response = http.post("/api/v1/measurements", content=b"[{},{},{},{}]")
            assert (response.status_code, response.json()["error"]) == (413, "batch_too_large")
            body = json.dumps({"endpoints": []}).encode()
            control = http.post("/api/v1/control", content=body, headers={
                "Content-Type": "application/json",
                **sign_request(key, "POST", "/api/v1/control", body)})
            assert (control.status_code, control.json()["error"]) == (403, "control_disabled")
        # a connection stays with the worker that accepted it: each batch's answer
        # closes it, so that busy uploaders spread over the workers
        answer = http.post("/api/v1/measurements", content=b"[]")
        assert (answer.status_code, answer.headers.get("connection")) == (200, "close")


def test_one_worker_keeps_connections_alive(tmp_path: Path) -> None:
    with Collector(tmp_path / "c", None, ["--no-control"]) as collector, \
            httpx.Client(base_url=collector.url) as http:
        answer = http.post("/api/v1/measurements", content=b"[]")
        assert (answer.status_code, answer.headers.get("connection")) == (200, None)
