from __future__ import annotations

from pathlib import Path

import pytest

from probe.catalogue import DEFAULT_CATALOGUE, load_catalogue, parse_catalogue
from probe.core.errors import UserError

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
version: 1
services:
  - id: whatsapp
    name: WhatsApp
    endpoints:
      - check: dns
        host: g.whatsapp.net
        role: messaging
      - check: stun
        host: 192.0.2.1
        port: 3478
        transport: udp
        role: call
"""


def test_valid_catalogue_parses_with_defaults() -> None:
    catalogue = parse_catalogue(GOOD, "good.yaml")
    dns_endpoint, stun_endpoint = catalogue.services[0].endpoints
    assert dns_endpoint.check == "dns" and dns_endpoint.qtype == "A"
    assert stun_endpoint.transport == "udp" and stun_endpoint.port == 3478


@pytest.mark.parametrize("text,expected", [
    (GOOD.replace("port: 3478", "port: 70000"),
     "x.yaml:11: services[0] (whatsapp) endpoints[1] (stun 192.0.2.1) port: "),
    (GOOD.replace("port: 3478", "port: true"),  # YAML's true is no port 1
     "x.yaml:11: services[0] (whatsapp) endpoints[1] (stun 192.0.2.1) port: "),
    (GOOD.replace("port: 3478", "port: '3478'"),
     "x.yaml:11: services[0] (whatsapp) endpoints[1] (stun 192.0.2.1) port: "),
    (GOOD.replace("check: stun", "check: ping"),
     "x.yaml:9: services[0] (whatsapp) endpoints[1] (ping 192.0.2.1): unknown check"),
    (GOOD.replace("transport: udp", "transport: sctp"),
     "x.yaml:12: services[0] (whatsapp) endpoints[1] (stun 192.0.2.1) transport: "),
    (GOOD.replace("role: call", "role: video"),
     "x.yaml:13: services[0] (whatsapp) endpoints[1] (stun 192.0.2.1) role: "),
    (GOOD.replace("        role: messaging\n", "        role: messaging\n        prot: 1\n"),
     "x.yaml:9: services[0] (whatsapp) endpoints[0] (dns g.whatsapp.net) prot: unknown field"),
    (GOOD.replace("host: g.whatsapp.net", "host: 'bad host!'"),
     "x.yaml:7: services[0] (whatsapp) endpoints[0] (dns bad host!) host: "),
    (GOOD.replace("id: whatsapp", "id: WhatsApp"), "x.yaml:3: services[0] (WhatsApp) id: "),
    (GOOD.replace("version: 1", "version: 2"), "x.yaml:1: version: "),
    (GOOD + GOOD.split("services:\n")[1], "x.yaml:14: services[1]: duplicate service id"),
    ("version: 1\nservices: [\n", "x.yaml:3: not valid YAML"),
    ("- just\n- a list\n", "x.yaml: a catalogue must be a mapping"),
    ("version: 1\nservices: []\n", "x.yaml:2: services: "),
])
def test_errors_name_file_line_entry_and_field(text: str, expected: str) -> None:
    with pytest.raises(UserError) as caught:
        parse_catalogue(text, "x.yaml")
    assert str(caught.value).startswith(expected), str(caught.value)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="catalogue not found"):
        load_catalogue(tmp_path / "nope.yaml")
    with pytest.raises(UserError, match="is a directory"):
        load_catalogue(tmp_path)


def test_select_services() -> None:
    catalogue = parse_catalogue(GOOD, "good.yaml")
    assert catalogue.select(["whatsapp"]).services[0].id == "whatsapp"
    with pytest.raises(UserError, match="unknown service 'skype'"):
        catalogue.select(["skype"])


def test_default_catalogue_has_messaging_and_call_for_every_service() -> None:
    catalogue = load_catalogue(DEFAULT_CATALOGUE)
    ids = {s.id for s in catalogue.services}
    assert len(ids) >= 10
    for service in catalogue.services:
        roles = {str(e.role) for e in service.endpoints}
        assert roles == {"call", "messaging"}, service.id


def test_default_catalogue_cites_its_sources() -> None:
    text = DEFAULT_CATALOGUE.read_text()
    assert text.count("http") >= 10


def test_lab_catalogue_points_only_at_private_or_loopback_hosts() -> None:
    import ipaddress

    from probe.catalogue import is_ip_literal

    catalogue = load_catalogue(ROOT / "configs" / "lab-catalogue.yaml")
    for service in catalogue.services:
        for endpoint in service.endpoints:
            host = endpoint.host
            if is_ip_literal(host):
                assert not ipaddress.ip_address(host).is_global, host
            else:
                assert host.endswith((".lab", ".test", "localhost")), host


def test_without_checks() -> None:
    catalogue = parse_catalogue(GOOD, "good.yaml")
    kept = catalogue.without_checks(["stun"]).services[0].endpoints
    assert [e.check for e in kept] == ["dns"]
    with pytest.raises(UserError, match="unknown check 'ping'"):
        catalogue.without_checks(["ping"])
    with pytest.raises(UserError, match="leaves nothing to measure"):
        catalogue.without_checks(["stun", "dns"])
