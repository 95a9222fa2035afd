"""Enrichment: country and network of the submitting address, from the
operator's .mmdb files (built here with mmdb-writer) or the bundled offline
data; nothing for private addresses; the address itself kept only on request."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from collector.geoip import NOTHING, Enricher
from probe.core.signing import ProbeKey
from tests.collector.conftest import make_record, register, unique_service
from tests.collector.harness import Collector

MAROC_TELECOM = "41.248.1.1"


def build_mmdb(tmp_path: Path) -> tuple[Path, Path]:
    country = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-Country")
    country.insert_network(IPSet(["41.248.0.0/14"]), {"country": {"iso_code": "MA"}})
    country.insert_network(IPSet(["2a01:e00::/29"]), {"country": {"iso_code": "FR"}})
    asn = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-ASN")
    asn.insert_network(IPSet(["41.248.0.0/14"]), {
        "autonomous_system_number": 36903, "autonomous_system_organization": "Maroc Telecom"})
    paths = tmp_path / "country.mmdb", tmp_path / "asn.mmdb"
    country.to_db_file(str(paths[0]))
    asn.to_db_file(str(paths[1]))
    return paths


def test_mmdb_files(tmp_path: Path) -> None:
    country, asn = build_mmdb(tmp_path)
    enricher = Enricher(country, asn)
    found = enricher.lookup(MAROC_TELECOM)
    assert (found.cc, found.asn, found.as_org) == ("MA", 36903, "Maroc Telecom")
    assert found.source == "mmdb:GeoLite2-Country+mmdb:GeoLite2-ASN"
    assert found.date == datetime.now(UTC).date().isoformat()
    french = enricher.lookup("2a01:e00::1")
    assert (french.cc, french.asn) == ("FR", None)
    assert enricher.lookup("8.8.8.8").cc is None  # not in these files
    for private in ("127.0.0.1", "10.1.2.3", "192.168.1.1", "::1", "fe80::1", "100.64.0.1",
                    "not an address", None):
        assert enricher.lookup(private) == NOTHING
    enricher.close()


def test_builtin_offline_data() -> None:
    found = Enricher().lookup(MAROC_TELECOM)
    assert found.cc == "MA" and found.asn is None and found.as_org
    assert found.source is not None and found.source.startswith("geoip2fast:")
    assert found.date is not None and len(found.date) == 10
    assert Enricher().lookup("192.168.1.1") == NOTHING
    assert Enricher(builtin=False).lookup(MAROC_TELECOM) == NOTHING


@pytest.mark.parametrize("keep_ip", [False, True])
def test_records_carry_the_network_they_came_from(tmp_path: Path, keep_ip: bool) -> None:
    country, asn = build_mmdb(tmp_path)
    args = ["--geoip-country", str(country), "--geoip-asn", str(asn),
            "--forwarded-allow-ips", "127.0.0.1"] + (["--keep-ip"] if keep_ip else [])
    key, service = ProbeKey.generate(), unique_service()
    with Collector(tmp_path / "collector", None, args) as collector, \
            collector.client() as http:
        register(http, key)
        record = make_record(key, service)
        response = http.post("/api/v1/measurements", json=[record],
                             headers={"X-Forwarded-For": MAROC_TELECOM})
        assert response.json()["results"][0]["status"] == "accepted"
        (item,) = http.get("/api/v1/measurements", params={"cc": "ma", "asn": 36903,
                                                            "service": service}).json()["items"]
        export = collector.cli("export", "--format", "csv", "--out", "-", "--service",
                               service, "--include-ip").stdout
        public = http.get("/api/v1/export", params={"format": "csv"}).text
        log = collector.log()
    assert (item["probe_cc"], item["probe_asn"], item["probe_as_org"]) == (
        "MA", 36903, "Maroc Telecom")
    assert item["geoip"]["source"] == "mmdb:GeoLite2-Country+mmdb:GeoLite2-ASN"
    assert item["measurement"] == json.loads(json.dumps(record))
    assert "probe_ip" not in item and MAROC_TELECOM not in public  # never over HTTP
    if keep_ip:
        assert MAROC_TELECOM in export
    else:
        assert MAROC_TELECOM not in export
        assert MAROC_TELECOM not in log  # not even in the access log
