"""Attribution learnt by a pass and signed into its records (probe/run/attribution.py):
from the test helper, which looks up the address it sees (shown here as a
public one by a forwarding proxy, as a reverse proxy shows the real one), from
the user's own .mmdb files, or `none`; learnt again after a route change; the
collector's whoami DNS server answers with the asking resolver's address."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.name
import dns.rcode
import httpx
import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from collector.whoami import answer
from probe.catalogue import parse_catalogue
from probe.core.signing import ProbeKey
from probe.run.attribution import Attributor, LocalGeoip
from probe.run.network import RouteState
from probe.run.runner import RunOptions, run_pass
from probe.store.spool import Spool
from tests.collector.harness import Collector
from tests.collector.test_geoip import MAROC_TELECOM, build_mmdb
from tests.support.forwarding_proxy import ForwardingProxy
from tests.support.tcp_servers import closed_port


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    tmp = tmp_path_factory.mktemp("attribution")
    country, asn = build_mmdb(tmp)
    args = ["--geoip-country", str(country), "--geoip-asn", str(asn),
            "--forwarded-allow-ips", "127.0.0.1", "--control-allow-private"]
    with Collector(tmp / "collector", None, args) as running:
        yield running


def catalogue() -> Any:
    return parse_catalogue(f"""\
version: 1
services:
  - id: chat
    name: Chat
    endpoints:
      - {{check: tcp, host: 127.0.0.1, port: {closed_port()}, role: call}}
""")


def registered(collector: Collector) -> ProbeKey:
    key = ProbeKey.generate()
    httpx.post(collector.url + "/api/v1/probes", json={"public_key": key.public_b64})
    return key


async def one_pass(tmp_path: Path, key: ProbeKey, control: str | None,
                   geoip: LocalGeoip | None = None) -> dict[str, Any]:
    options = RunOptions(catalogue=catalogue(), control_url=control, collector_url=control,
                         timeout=1.0, geoip=geoip)
    with Spool(tmp_path / "spool.sqlite3") as spool:
        (record,) = await run_pass(options, key, spool)
    return record


async def test_the_helper_attributes_the_measured_link(collector: Collector,
                                                       tmp_path: Path) -> None:
    key = registered(collector)
    async with ForwardingProxy(collector.port, MAROC_TELECOM) as proxy:
        record = await one_pass(tmp_path, key, proxy.url)
    network = record["network"]
    assert (network["cc"], network["asn"], network["as_org"], network["attribution"]) == (
        "MA", 36903, "Maroc Telecom", "control")
    assert network["resolver_asn"] is None  # a loopback resolver proves nothing
    assert MAROC_TELECOM not in str(record)  # the address is never in the record
    # and the collector files it under that signed attribution
    http = httpx.Client(base_url=collector.url)
    response = http.post("/api/v1/measurements", json=[record])
    assert response.json()["results"][0]["status"] == "accepted"
    (item,) = http.get("/api/v1/measurements", params={"key_id": key.key_id}).json()["items"]
    assert (item["probe_cc"], item["attribution"], item["upload"]["cc"]) == ("MA", "control",
                                                                           None)


async def test_local_files_attribute_with_the_echoed_address(collector: Collector,
                                                             tmp_path: Path) -> None:
    asn = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-ASN")
    asn.insert_network(IPSet(["41.248.0.0/14"]), {
        "autonomous_system_number": 64500, "autonomous_system_organization": "My own copy"})
    path = tmp_path / "mine.mmdb"
    asn.to_db_file(str(path))
    key = registered(collector)
    async with ForwardingProxy(collector.port, MAROC_TELECOM) as proxy:
        record = await one_pass(tmp_path, key, proxy.url, LocalGeoip.open(None, path))
    network = record["network"]
    assert (network["cc"], network["asn"], network["as_org"], network["attribution"]) == (
        None, 64500, "My own copy", "local")


async def test_no_helper_no_attribution(tmp_path: Path) -> None:
    record = await one_pass(tmp_path, ProbeKey.generate(), None)
    network = record["network"]
    assert network["attribution"] == "none"
    assert [network[k] for k in ("cc", "asn", "as_org", "resolver_asn")] == [None] * 4


async def test_a_public_resolver_is_attributed_without_a_query(collector: Collector) -> None:
    key = registered(collector)
    async with ForwardingProxy(collector.port, MAROC_TELECOM) as proxy:
        # 41.249.0.53 is in the test database; no DNS query is sent anywhere: with no
        # whoami zone the configured resolver's own (public) address is what counts
        facts = await Attributor(proxy.url, key, resolver=("41.249.0.53", 53)).learn()
    assert (facts.asn, facts.resolver_asn, str(facts.source)) == (36903, 36903, "control")


async def test_a_route_change_makes_the_pass_learn_again(collector: Collector,
                                                         tmp_path: Path) -> None:
    from probe.checks.base import Budget
    from probe.run.connectivity import Connectivity, ConnectivityWatch
    from probe.run.network import MeasuredNetwork, NetworkWatch, link_facts
    from probe.run.runner import RunState, tasks_of

    key = registered(collector)
    # read when the watch starts, then once before each record is made
    states = iter([RouteState("wlan0", "192.168.1.2")] * 2 + [RouteState("usb0", "10.0.0.2")] * 9)
    async with ForwardingProxy(collector.port, MAROC_TELECOM) as proxy:
        attributor = Attributor(proxy.url, key)
        network = MeasuredNetwork(link_facts("auto"), await attributor.learn())
        options = RunOptions(catalogue=catalogue(), timeout=1.0)
        with Spool(tmp_path / "spool.sqlite3") as spool:
            state = RunState(options, key, spool, Budget(None),
                             lookup=_NoControl(),  # type: ignore[arg-type]  # no control here
                             connectivity=ConnectivityWatch(
                                 Connectivity(True, "test", "connected", 0.0)),
                             on_record=None,
                             watch=NetworkWatch(network, read=lambda: next(states)),
                             attributor=attributor)
            (task,) = tasks_of(options.catalogue)
            before = await state.finish(await state.observe(task))
            after = await state.finish(await state.observe(task))
    assert "changes" not in before["network"]
    kinds = [c["kind"] for c in after["network"]["changes"]]
    assert kinds == ["route", "attribution"]
    assert after["network"]["changes"][1]["detail"] == "learnt again: control"
    assert after["network"]["attribution"] == "control"


class _NoControl:
    error = None

    async def __call__(self, endpoint: Any) -> None:
        return None


def test_whoami_answers_with_the_asking_address() -> None:
    zone = dns.name.from_text("whoami.example.org")
    query = dns.message.make_query("a1b2.whoami.example.org", "A")
    reply = dns.message.from_wire(answer(query.to_wire(), "41.249.0.53", zone) or b"")
    (rrset,) = reply.answer
    assert [r.to_text() for r in rrset] == ["41.249.0.53"] and rrset.ttl == 0
    six = dns.message.make_query("x.whoami.example.org", "AAAA")
    reply = dns.message.from_wire(answer(six.to_wire(), "2a01:e00::53", zone) or b"")
    assert [r.to_text() for r in reply.answer[0]] == ["2a01:e00::53"]
    other = dns.message.make_query("www.example.org", "A")
    assert dns.message.from_wire(answer(other.to_wire(), "41.249.0.53", zone) or b""
                                 ).rcode() == dns.rcode.REFUSED
    assert answer(b"garbage", "41.249.0.53", zone) is None
