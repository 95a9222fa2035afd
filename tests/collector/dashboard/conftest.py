"""A collector per backend (SQLite, PostgreSQL) loaded with the Morocco 2016
replay's records (demo_data.py), shared by a module's tests."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from probe.core.signing import ProbeKey
from tests.collector.conftest import BACKENDS, UploadSigner, database_url
from tests.collector.dashboard.demo_data import demo_records
from tests.collector.harness import Collector

ARGS = ["--max-record-age-days", "0"]  # the replay's records are dated 2015-2016


def load_demo(client: httpx.Client, passes: int = 2) -> dict[str, ProbeKey]:
    keys = {"cellular": ProbeKey.generate(), "adsl": ProbeKey.generate()}
    for key in keys.values():
        assert client.post("/api/v1/probes", json={"public_key": key.public_b64}
                           ).status_code in (200, 201)
    client.auth = UploadSigner(keys["cellular"])  # signed, as the probe's uploader sends
    records = demo_records(keys, passes)
    for start in range(0, len(records), 500):
        answer = client.post("/api/v1/measurements", json=records[start:start + 500])
        assert answer.status_code == 200, answer.text
        assert {r["status"] for r in answer.json()["results"]} == {"accepted"}
    return keys


@pytest.fixture(scope="module", params=BACKENDS)
def demo(request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    db = database_url(request.param, request)
    data_dir = tmp_path_factory.mktemp(f"dashboard-{request.param}")
    with Collector(data_dir, db, ARGS) as running, running.client() as client:
        running.keys = load_demo(client)  # type: ignore[attr-defined]
        yield running
