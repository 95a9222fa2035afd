"""The upstream kind (cellular | fixed | unknown) as a filter of the API, the export
route and the export command, and as export columns with how it was decided;
on SQLite and PostgreSQL. Records of older probes, without the field, count as
`unknown`. The store keeps them as columns (migration `upstream`), filled from
the records stored before."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from collector.db.migrate import upgrade
from probe.core.signing import ProbeKey
from tests.collector.conftest import (
    BACKENDS,
    database_url,
    make_record,
    register,
    unique_service,
)
from tests.collector.harness import Collector

NETWORKS = {
    "tether": {"link_type": "cellular", "link_type_source": "driver", "access": "usb",
               "access_source": "driver", "upstream": "cellular", "upstream_source": "driver",
               "upstream_confidence": "medium",
               "link_evidence": ["driver rndis_host: a phone's USB tethering"]},
    "adsl": {"link_type": "adsl", "link_type_source": "user", "access": "wifi",
             "access_source": "driver", "upstream": "fixed", "upstream_source": "user",
             "upstream_confidence": "high", "link_evidence": ["--link-type adsl"]},
    "old": {"link_type": "wifi", "link_type_source": "auto"},  # an earlier probe
}


def upload(http: httpx.Client) -> tuple[str, dict[str, str]]:
    key = ProbeKey.generate()
    register(http, key)
    service = unique_service()
    records = {name: make_record(key, service, network=network)
               for name, network in NETWORKS.items()}
    response = http.post("/api/v1/measurements", json=list(records.values()))
    assert {r["status"] for r in response.json()["results"]} == {"accepted"}, response.text
    return service, {name: record["id"] for name, record in records.items()}


def test_the_api_and_the_export_filter_on_the_upstream_kind(http: httpx.Client) -> None:
    service, ids = upload(http)

    def found(upstream: str) -> list[str]:
        page = http.get("/api/v1/measurements", params={"service": service,
                                                        "upstream": upstream})
        assert page.status_code == 200, page.text
        return [item["measurement"]["id"] for item in page.json()["items"]]

    assert found("cellular") == [ids["tether"]]
    assert found("fixed") == [ids["adsl"]]
    assert found("unknown") == [ids["old"]]
    assert http.get("/api/v1/measurements", params={"upstream": "satellite"}).status_code == 422
    export = http.get("/api/v1/export", params={"format": "csv", "service": service,
                                                "upstream": "cellular"})
    (row,) = csv.DictReader(io.StringIO(export.text))
    assert (row["id"], row["link_type"], row["upstream"], row["upstream_source"],
            row["upstream_confidence"]) == (ids["tether"], "cellular", "cellular", "driver",
                                            "medium")


def test_the_export_command_filters_and_fills_the_columns(collector: Collector,
                                                          http: httpx.Client,
                                                          tmp_path: Path) -> None:
    service, ids = upload(http)
    out = tmp_path / "out.csv"
    done = collector.cli("export", "--format", "csv", "--out", str(out), "--service", service)
    assert done.returncode == 0, done.stderr
    rows = {r["id"]: r for r in csv.DictReader(out.open())}
    assert [rows[ids[n]]["upstream"] for n in NETWORKS] == ["cellular", "fixed", ""]
    assert rows[ids["old"]]["upstream_source"] == ""
    fixed = collector.cli("export", "--format", "jsonl", "--out", "-", "--service", service,
                          "--upstream", "fixed")
    assert fixed.returncode == 0 and ids["adsl"] in fixed.stdout and ids["old"] not in fixed.stdout
    bad = collector.cli("export", "--format", "csv", "--out", "-", "--upstream", "mobile")
    assert bad.returncode == 2 and "--upstream 'mobile': expected one of" in bad.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_migration_fills_the_columns_of_records_stored_before(
        backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    from alembic import command

    from collector.db.engine import make_engine
    from collector.db.migrate import alembic_config, current_revision

    url = database_url(backend, request) or f"sqlite:///{tmp_path / 'old.sqlite3'}"
    engine = make_engine(url)
    try:
        command.upgrade(alembic_config(engine), "0001")
        key = ProbeKey.generate()
        rows = [make_record(key, network=NETWORKS["tether"]), make_record(key)]
        with engine.begin() as conn:
            for i, record in enumerate(rows):
                conn.execute(sa.text(
                    "INSERT INTO measurements (id, key_id, service, check_name, role, transport,"
                    " endpoint_host, endpoint_port, verdict, link_type, started_at, received_at,"
                    " record) VALUES (:id, :key, 'chat', 'tcp', 'call', 'tcp', 'h', 443, 'open',"
                    " 'cellular', :t, :t, :record)"),
                    {"id": record["id"], "key": key.key_id, "record": json.dumps(record),
                     "t": datetime(2016, 1, 7, i, tzinfo=UTC)})
        upgrade(engine)
        from alembic.script import ScriptDirectory

        from collector.db.migrate import MIGRATIONS

        # the newest migration, whichever it is (later ones follow 'upstream')
        assert current_revision(engine) == ScriptDirectory(str(MIGRATIONS)).get_current_head()
        with engine.connect() as conn:
            found = conn.execute(sa.text("SELECT upstream, upstream_source, upstream_confidence "
                                         "FROM measurements ORDER BY started_at")).all()
        assert [tuple(r) for r in found] == [("cellular", "driver", "medium"),
                                             (None, None, None)]
    finally:
        engine.dispose()
