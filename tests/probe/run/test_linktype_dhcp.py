"""Phone hotspots recognised from the lease each DHCP client keeps, in the
formats dhclient, systemd-networkd, dhcpcd and NetworkManager write."""

from __future__ import annotations

import json
from ipaddress import IPv4Address
from pathlib import Path

from probe.core.record import Access, Confidence, LinkSource, LinkType, Upstream
from probe.run.linktype import Host, detect_facts
from probe.run.linktype_dhcp import findings, leases, parse_dhclient
from tests.support.fakeroot import FakeRoot, bootreply

METERED_HEX = b"ANDROID_METERED".hex()
METERED_COLONS = ":".join(f"{b:02x}" for b in b"ANDROID_METERED")


def dhclient_lease(interface: str, address: str, router: str, vendor: str | None) -> str:
    option = f"  option vendor-encapsulated-options {vendor};\n" if vendor else ""
    return (f'lease {{\n  interface "{interface}";\n  fixed-address {address};\n'
            f"  option subnet-mask 255.255.255.0;\n  option routers {router};\n"
            f"  option dhcp-lease-time 3600;\n  option dhcp-message-type 5;\n"
            f"  option domain-name-servers {router};\n{option}"
            "  renew 3 2024/05/01 10:00:00;\n  expire 3 2024/05/01 10:30:00;\n}\n")


def wifi_laptop(tmp_path: Path, gateway: str = "192.168.43.1") -> FakeRoot:
    root = FakeRoot(tmp_path)
    root.interface("wlan0", driver="iwlwifi", devtype="wlan", wireless=True)
    root.route("wlan0", gateway)
    return root


def hotspot_upstream(tmp_path: Path) -> list[tuple[Upstream | None, Confidence, str]]:
    return [(f.upstream, f.confidence, f.evidence) for f in
            findings("wlan0", tmp_path, None) if f.source is LinkSource.HOTSPOT]


def test_dhclient_lease_with_option_43_in_hex(tmp_path: Path) -> None:
    root = wifi_laptop(tmp_path)
    root.write("var/lib/dhcp/dhclient.wlan0.leases",
               dhclient_lease("wlan0", "192.168.1.20", "192.168.1.1", None)
               + dhclient_lease("wlan0", "10.42.0.7", "10.42.0.1", METERED_COLONS))
    (found,) = hotspot_upstream(tmp_path)
    assert found[:2] == (Upstream.CELLULAR, Confidence.MEDIUM)
    assert "ANDROID_METERED (dhclient lease)" in found[2]


def test_dhclient_quoted_option_and_the_last_lease_of_the_interface_wins(tmp_path: Path) -> None:
    text = (dhclient_lease("wlan0", "10.42.0.7", "10.42.0.1", '"ANDROID_METERED"')
            + dhclient_lease("eth0", "192.168.1.20", "192.168.1.1", None))
    lease = parse_dhclient(text, "wlan0")
    assert lease is not None and lease.vendor_specific == b"ANDROID_METERED"
    assert lease.router == IPv4Address("10.42.0.1")
    home = parse_dhclient(dhclient_lease("wlan0", "10.42.0.7", "10.42.0.1", '"ANDROID_METERED"')
                          + dhclient_lease("wlan0", "192.168.1.20", "192.168.1.1", None), "wlan0")
    assert home is not None and home.vendor_specific is None


def test_networkmanager_dhclient_backend_lease(tmp_path: Path) -> None:
    root = wifi_laptop(tmp_path, "10.42.0.1")
    root.write("var/lib/NetworkManager/dhclient-4b2c-8a1f-wlan0.lease",
               dhclient_lease("wlan0", "10.42.0.7", "10.42.0.1", METERED_COLONS))
    assert hotspot_upstream(tmp_path)[0][0] is Upstream.CELLULAR


def test_networkd_lease_key_value_and_json(tmp_path: Path) -> None:
    root = FakeRoot(tmp_path)
    root.interface("usb0", driver="cdc_ncm", bus="usb", vendor="1d6b")  # vendor says nothing
    root.route("usb0", "10.161.54.1")
    path = f"run/systemd/netif/leases/{root.ifindex('usb0')}"
    root.write(path, "# This is private data. Do not parse.\nADDRESS=10.161.54.99\n"
               "NETMASK=255.255.255.0\nROUTER=10.161.54.1\nSERVER_ADDRESS=10.161.54.1\n"
               f"T1=1800\nT2=3150\nLIFETIME=3600\nVENDOR_SPECIFIC={METERED_HEX}\n")
    facts = detect_facts(Host(root=tmp_path, bus=None, platform="linux"))
    assert (facts.access, facts.upstream, facts.upstream_source, facts.link_type) == (
        Access.USB, Upstream.CELLULAR, LinkSource.HOTSPOT, LinkType.CELLULAR)
    root.write(path, json.dumps({"Address": [10, 161, 54, 99], "Router": [[10, 161, 54, 1]],
                                 "Vendor_Specific": METERED_HEX}))
    (lease,) = leases("usb0", tmp_path)
    assert lease.client == "networkd" and lease.vendor_specific == b"ANDROID_METERED"
    assert lease.address == IPv4Address("10.161.54.99")


def test_dhcpcd_raw_lease_on_a_pi(tmp_path: Path) -> None:
    root = wifi_laptop(tmp_path, "192.168.122.1")
    root.write("var/lib/dhcpcd/wlan0-AndroidAP.lease", bootreply(
        "192.168.122.40", [(53, b"\x05"), (3, IPv4Address("192.168.122.1").packed),
                           (43, b"ANDROID_METERED")]))
    (lease,) = leases("wlan0", tmp_path)
    assert (lease.client, lease.vendor_specific) == ("dhcpcd", b"ANDROID_METERED")
    root.write("var/lib/dhcpcd/wlan0-AndroidAP.lease", b"not a DHCP message")
    assert leases("wlan0", tmp_path) == []  # unreadable: no evidence, no error


def test_networkmanager_internal_lease_gives_only_the_address(tmp_path: Path) -> None:
    root = wifi_laptop(tmp_path, "10.9.9.9")  # route unknown; the lease has the address
    root.write("var/lib/NetworkManager/internal-8d1e-wlan0.lease",
               "# This is private data. Do not parse.\nADDRESS=172.20.10.3\n")
    (found,) = hotspot_upstream(tmp_path)
    assert found[:2] == (Upstream.CELLULAR, Confidence.LOW) and "iPhone" in found[2]


def test_subnet_hints_are_weak_and_a_home_router_gives_none(tmp_path: Path) -> None:
    wifi_laptop(tmp_path, "192.168.43.1")
    facts = detect_facts(Host(root=tmp_path, bus=None, platform="linux"))
    assert (facts.upstream, facts.upstream_confidence, facts.upstream_source) == (
        Upstream.CELLULAR, Confidence.LOW, LinkSource.HOTSPOT)
    assert not any("192.168.43.1" in e for e in facts.evidence)  # addresses are never recorded
    home = tmp_path / "home"
    wifi_laptop(home, "192.168.1.1").write(
        "var/lib/dhcp/dhclient.leases", dhclient_lease("wlan0", "192.168.1.20", "192.168.1.1",
                                                        None))
    facts = detect_facts(Host(root=home, bus=None, platform="linux"))
    assert (facts.link_type, facts.upstream) == (LinkType.WIFI, Upstream.UNKNOWN)
