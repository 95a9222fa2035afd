"""Attribution on the collector's side: the test helper's look-up of the
address a probe shows it (`GET /api/v1/attribution`), and how stored records
are filed: under their signed attribution, with the upload address's look-up
kept apart as a cross-check and a disagreement recorded, never overwritten."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from probe.core.auth import sign_request
from probe.core.signing import ProbeKey
from tests.collector.conftest import make_record, register, unique_service
from tests.collector.harness import Collector
from tests.collector.test_geoip import MAROC_TELECOM, build_mmdb

ALGERIE_TELECOM = {"link_type": "cellular", "cc": "DZ", "asn": 36947,
                   "as_org": "Algerie Telecom", "resolver_asn": None, "attribution": "control"}


@pytest.fixture(scope="module")
def geo_collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    tmp = tmp_path_factory.mktemp("attribution")
    country, asn = build_mmdb(tmp)
    args = ["--geoip-country", str(country), "--geoip-asn", str(asn),
            "--forwarded-allow-ips", "127.0.0.1"]
    with Collector(tmp / "collector", None, args) as running:
        yield running


def ask(http: httpx.Client, key: ProbeKey, query: str = "",
        address: str = MAROC_TELECOM) -> httpx.Response:
    path = "/api/v1/attribution"
    headers = {**sign_request(key, "GET", path, b""), "X-Forwarded-For": address}
    return http.get(path + query, headers=headers)


def test_the_helper_looks_up_the_address_it_sees(geo_collector: Collector) -> None:
    key = ProbeKey.generate()
    with geo_collector.client() as http:
        assert http.get("/api/v1/attribution").status_code == 401
        register(http, key)
        answer = ask(http, key).json()
        assert (answer["cc"], answer["asn"], answer["as_org"]) == ("MA", 36903, "Maroc Telecom")
        assert answer["source"] == "mmdb:GeoLite2-Country+mmdb:GeoLite2-ASN"
        assert "address" not in answer  # echoed only when asked
        echoed = ask(http, key, "?echo=true&resolver=41.249.0.53").json()
        assert echoed["address"] == MAROC_TELECOM
        assert echoed["resolver"] == {"asn": 36903, "as_org": "Maroc Telecom"}
        assert ask(http, key, "?resolver=10.0.0.1").json()["resolver"] == {"asn": None,
                                                                           "as_org": None}
        assert ask(http, key, "?resolver=nonsense").status_code == 400
        private = ask(http, key, address="192.168.1.20").json()
        assert (private["cc"], private["asn"]) == (None, None)
    assert MAROC_TELECOM not in geo_collector.log()  # looked up, not kept


def test_records_are_filed_under_their_signed_attribution(geo_collector: Collector) -> None:
    key, service = ProbeKey.generate(), unique_service()
    with geo_collector.client() as http:
        register(http, key)
        signed = make_record(key, service, network=ALGERIE_TELECOM)  # measured in Algeria,
        unsigned = make_record(key, service)  # and one from an older probe
        response = http.post("/api/v1/measurements", json=[signed, unsigned],
                             headers={"X-Forwarded-For": MAROC_TELECOM})  # uploaded from MA
        assert [r["status"] for r in response.json()["results"]] == ["accepted"] * 2

        def find(**filters: object) -> list[dict[str, object]]:
            return list(http.get("/api/v1/measurements",
                                 params={"service": service, **filters}).json()["items"])

        (dz,) = find(cc="DZ")
        assert (dz["probe_cc"], dz["probe_asn"], dz["attribution"]) == ("DZ", 36947, "control")
        assert dz["upload"] == {"cc": "MA", "asn": 36903, "as_org": "Maroc Telecom"}
        assert dz["attribution_mismatch"] is True
        (ma,) = find(asn=36903)
        assert ma["measurement"]["id"] == unsigned["id"]
        assert (ma["probe_cc"], ma["attribution"], ma["attribution_mismatch"]) == (
            "MA", "collector", None)
        csv_text = geo_collector.cli("export", "--format", "csv", "--out", "-", "--service",
                                     service).stdout
        assert "attribution_mismatch" in csv_text.splitlines()[0]


def test_catching_up_in_chunks_enters_each_record_once_in_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlalchemy as sa
    from nacl.signing import SigningKey

    from collector import translog
    from collector.db.engine import make_engine
    from collector.db.schema import measurements
    from collector.identity import CollectorKey

    key, service = ProbeKey.generate(), unique_service()
    with Collector(tmp_path / "c", None, ["--no-transparency-log"]) as running, \
            running.client() as http:
        register(http, key)
        http.post("/api/v1/measurements", json=[make_record(key, service) for _ in range(5)])
    monkeypatch.setattr(translog, "CATCH_UP_CHUNK", 2)  # three chunks: 2, 2, 1
    engine = make_engine(f"sqlite:///{tmp_path / 'c' / 'collector.sqlite3'}")
    log = translog.TransLog(engine, CollectorKey(SigningKey.generate()))
    told: list[int] = []
    assert log.catch_up(told.append) == 5 and log.catch_up() == 0
    assert told == [2, 4, 5]  # after each chunk (the CLI prints every 5 s of it)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(measurements.c.log_index)
                            .order_by(measurements.c.seq)).scalars().all()
    assert rows == [0, 1, 2, 3, 4] and log.size() == 5


def test_log_catches_up_with_records_stored_without_it(tmp_path: Path) -> None:
    from probe.core import merkle
    from probe.core.evidence import head_hashes, hexes

    key, service = ProbeKey.generate(), unique_service()
    off = Collector(tmp_path / "c", None, ["--no-transparency-log"])
    with off as running, running.client() as http:
        register(http, key)
        records = [make_record(key, service) for _ in range(3)]
        results = http.post("/api/v1/measurements", json=records).json()["results"]
        assert [r["receipt"]["log_index"] for r in results] == [None] * 3
    with Collector(tmp_path / "c", None, []) as running, running.client() as http:
        size, root = head_hashes(http.get("/api/v1/log/head").json())
        assert size == 3
        # said in the log as it starts: at millions of records this takes minutes
        assert "entering the stored records that the transparency log lacks" in running.log()
        again = http.post("/api/v1/measurements", json=records).json()["results"]
        for result in again:
            index = result["receipt"]["log_index"]
            proof = http.get("/api/v1/log/inclusion", params={"index": index,
                                                               "tree_size": size}).json()
            assert merkle.verify_inclusion(index, size, bytes.fromhex(proof["leaf_hash"]),
                                           hexes(proof["audit_path"]), root)


def test_the_whoami_zone_is_served_and_announced(tmp_path: Path) -> None:
    import socket

    import dns.message
    import dns.query

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        port = probe_socket.getsockname()[1]
    args = ["--whoami-zone", "whoami.test", "--whoami-listen", f"127.0.0.1:{port}"]
    with Collector(tmp_path / "c", None, args) as running:
        assert httpx.get(running.url + "/api/v1/collector").json()["whoami_zone"] == "whoami.test"
        reply = dns.query.udp(dns.message.make_query("n0nce.whoami.test", "A"), "127.0.0.1",
                              port=port, timeout=5)
        assert [r.to_text() for r in reply.answer[0]] == ["127.0.0.1"]
