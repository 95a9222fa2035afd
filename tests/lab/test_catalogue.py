"""The lab catalogue never points outside the lab."""

from __future__ import annotations

import ipaddress

from deploy.lab import addresses
from deploy.lab.lab import LAB_CATALOGUE
from probe.catalogue import is_ip_literal, load_catalogue


def test_only_lab_names_or_private_addresses() -> None:
    catalogue = load_catalogue(LAB_CATALOGUE)
    endpoints = [e for s in catalogue.services for e in s.endpoints]
    assert endpoints
    for endpoint in endpoints:
        host = endpoint.host
        if is_ip_literal(host):
            ip = ipaddress.ip_address(host)
            assert ip.is_private or ip.is_loopback, host
        else:
            assert host.endswith((".lab", ".test")), host
        for server in getattr(endpoint, "ice_servers", ()):
            urls = (server.urls,) if isinstance(server.urls, str) else server.urls
            for url in urls:
                name = url.split(":")[1].split("?")[0]
                assert name.endswith((".lab", ".test")) or ipaddress.ip_address(name).is_private


def test_every_lab_name_is_in_the_lab_zone() -> None:
    catalogue = load_catalogue(LAB_CATALOGUE)
    for service in catalogue.services:
        for endpoint in service.endpoints:
            if endpoint.host.endswith(".lab"):
                assert endpoint.host in addresses.ZONE, endpoint.host


def test_each_service_has_a_messaging_and_a_call_path() -> None:
    catalogue = load_catalogue(LAB_CATALOGUE)
    for service in catalogue.services:
        assert {str(e.role) for e in service.endpoints} == {"messaging", "call"}, service.id


def test_webrtc_variants_one_endpoint_each_with_a_label() -> None:
    """aiortc uses one STUN and one TURN URL: one endpoint per path, each with a
    label a scenario case can select; all call the collector's reference peer."""
    catalogue = load_catalogue(LAB_CATALOGUE)
    calls = {e.label: e for s in catalogue.services for e in s.endpoints if e.check == "webrtc"}
    assert sorted(calls) == ["direct", "turn-tcp", "turn-tls", "turn-udp"]
    for label, endpoint in calls.items():
        assert endpoint.host == "collector.lab" and len(endpoint.ice_servers) == 1, label
        assert endpoint.policy == ("all" if label == "direct" else "relay"), label
    assert [str(calls[k].transport) for k in ("direct", "turn-udp", "turn-tcp", "turn-tls")] \
        == ["udp", "udp", "tcp", "tls"]
