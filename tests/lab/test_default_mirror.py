"""The lab's mirror of the default catalogue (deploy/lab/mirror.py): the
probe runs configs/catalogue.yaml unchanged inside the lab, every endpoint
answers with its real protocol and says `open`, its throttle and webrtc
placeholder is the lab's collector, and names outside the catalogue fail as
before."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.lab import addresses, mirror
from deploy.lab.shell import UsageError
from probe.catalogue import load_catalogue
from probe.record import LinkType
from tests.lab.conftest import require_root

CELL = LinkType.CELLULAR
CATALOGUE = load_catalogue(mirror.DEFAULT_CATALOGUE)
ENDPOINTS = [(s.id, e) for s in CATALOGUE.services for e in s.endpoints]


@pytest.fixture(scope="module")
def mirror_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A lab with one probe host whose internet mirrors the default catalogue."""
    require_root()
    from deploy.lab.lab import Lab
    from deploy.lab.topology import reap_stale

    reap_stale()
    lab = Lab(f"vwd{os.getpid() % 100000}", tmp_path_factory.mktemp("mirror"), links=(CELL,),
              mirror_catalogue=mirror.DEFAULT_CATALOGUE)
    lab.up(owner_pid=os.getpid())
    try:
        yield lab
    finally:
        lab.down()


def probe_run(lab, **options: tuple[str, ...]) -> list[dict]:  # type: ignore[no-untyped-def]
    argv = lab.run_argv(CELL, catalogue=mirror.DEFAULT_CATALOGUE, **options)
    result = subprocess.run(argv, env=lab.probe_env(CELL), capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def not_open(records: list[dict]) -> list[str]:
    return [f"{r['service']} {r['endpoint']}: {r['verdict']} {r['evidence'].get('failure')} "
            f"{r['evidence'].get('error')}" for r in records if r["verdict"] != "open"]


# --- the plan (no root) ---------------------------------------------------------------


def test_every_endpoint_of_the_default_catalogue_is_mirrored() -> None:
    plan = mirror.load()
    assert plan.skipped == ()
    pool = mirror.NAME_POOL
    served = {(f.address, f.proto, f.port) for f in plan.forwards}
    stun_servers = [(service, server) for service, endpoint in ENDPOINTS
                    if endpoint.check == "webrtc" for server in mirror.ice_stun_servers(endpoint)]
    assert len(stun_servers) == 9  # every service's call but FaceTime's names one
    for service, endpoint in [*ENDPOINTS, *stun_servers]:
        if endpoint.check in ("throttle", "webrtc"):
            continue  # the run's collector: nothing to mirror
        host = endpoint.host.lower()
        literal = host in plan.literals
        address = host if literal else plan.zone[host]
        assert literal or ipaddress.ip_address(address) in pool, (service, host)
        if endpoint.check == "dns":
            continue
        proto = "udp" if str(endpoint.transport) == "udp" else "tcp"
        assert (address, proto, endpoint.port) in served, (service, endpoint)
    # the certificate passes for every TLS host and SNI of the catalogue
    tls_hosts = {e.sni or e.host for _, e in ENDPOINTS if str(getattr(e, "transport", "")) == "tls"}
    assert tls_hosts <= set(plan.cert_names())
    # mirrored names never shadow the lab's own
    assert not set(plan.zone) & set(addresses.ZONE)


def test_the_mirror_refuses_literals_it_cannot_keep_inside_the_lab(tmp_path: Path) -> None:
    for literal in ("2001:db8::1", "192.88.99.10", "10.200.1.2"):
        path = tmp_path / "catalogue.yaml"
        path.write_text(f"version: 1\nservices:\n  - id: x\n    name: X\n    endpoints:\n"
                        f"      - {{check: tcp, host: '{literal}', port: 443, role: messaging}}\n")
        with pytest.raises(UsageError, match="public IPv4 literals only"):
            mirror.load(path)


# --- the running mirror (root) -----------------------------------------------------


def test_a_default_catalogue_pass_is_all_open(mirror_lab) -> None:  # type: ignore[no-untyped-def]
    records = probe_run(mirror_lab, skip=("throttle",))
    expected = sum(e.check != "throttle" for _, e in ENDPOINTS)
    assert len(records) == expected
    assert not_open(records) == []
    # the control reached every endpoint too: the collector's test helper goes
    # through the same mirror from the internet namespace
    assert {r["evidence"]["control"]["state"] for r in records} == {"ok"}
    checks = {r["endpoint"]["check"] for r in records}
    assert checks == {"dns", "tcp", "tls", "stun", "turn", "sip", "webrtc"}
    # every service's call path made a call, through the lab collector's reference peer
    calls = {r["service"]: r for r in records if r["endpoint"]["check"] == "webrtc"}
    assert set(calls) == {s.id for s in CATALOGUE.services}
    for call in calls.values():
        assert call["endpoint"]["host"] == "collector.example.org"  # as the catalogue says
        assert call["evidence"]["stages"]["media"]["ok"] is True


def test_the_throttle_placeholder_is_the_lab_collector(mirror_lab) -> None:  # type: ignore[no-untyped-def]
    records = probe_run(mirror_lab, services=("zoom",))
    throttle = [r for r in records if r["endpoint"]["check"] == "throttle"]
    assert len(throttle) == 1 and not_open(records) == []
    evidence = throttle[0]["evidence"]
    assert evidence["reflector_is_run_collector"] is True
    assert evidence["reflector"] == addresses.SERVICES["collector"]


QUERY = """
import sys, dns.message, dns.query, dns.rcode
for name in sys.argv[2:]:
    answer = dns.query.udp(dns.message.make_query(name, "A"), sys.argv[1], timeout=3)
    rrs = [r.address for rrset in answer.answer for r in rrset]
    print(name, dns.rcode.to_text(answer.rcode()), *rrs)
"""


def test_names_outside_the_catalogue_still_fail(mirror_lab) -> None:  # type: ignore[no-untyped-def]
    names = ["g.whatsapp.net", "nosuch.whatsapp.net", "www.example.com", "nosuch.lab",
             "chat.lumen.lab"]
    argv = ["ip", "netns", "exec", mirror_lab.topology.probe_ns(CELL), sys.executable, "-c",
            QUERY, addresses.resolver(), *names]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout
    answers = {line.split()[0]: line.split()[1:] for line in out.splitlines()}
    assert answers["g.whatsapp.net"] == ["NOERROR", mirror_lab.mirror.zone["g.whatsapp.net"]]
    assert answers["nosuch.whatsapp.net"] == ["REFUSED"]  # no recursion: the lab has no internet
    assert answers["www.example.com"] == ["REFUSED"]
    assert answers["nosuch.lab"] == ["NXDOMAIN"]
    assert answers["chat.lumen.lab"] == ["NOERROR", addresses.SERVICES["chat"]]
