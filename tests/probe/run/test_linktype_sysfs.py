"""What sysfs shows of each setup a volunteer may have, as fixture trees."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from probe.core.record import Access, Confidence, LinkSource, LinkType, Upstream
from probe.run.linktype import Host, decide, detect_facts
from probe.run.linktype_sysfs import default_route, findings
from tests.support.fakeroot import FakeRoot

Setup = Callable[[FakeRoot], object]

# (setup, access, upstream, confidence of the upstream, link_type)
SETUPS: dict[str, tuple[Setup, Access, Upstream, Confidence | None, LinkType]] = {
    "laptop Wi-Fi": (lambda r: r.interface("wlp2s0", driver="iwlwifi", devtype="wlan",
                                           wireless=True),
                     Access.WIFI, Upstream.UNKNOWN, None, LinkType.WIFI),
    "Ethernet (PCI)": (lambda r: r.interface("enp3s0", driver="r8169"),
                       Access.ETHERNET, Upstream.UNKNOWN, None, LinkType.ETHERNET),
    "Raspberry Pi 3 Ethernet (USB smsc95xx)": (
        lambda r: r.interface("eth0", driver="smsc95xx", bus="usb", vendor="0424"),
        Access.ETHERNET, Upstream.UNKNOWN, None, LinkType.ETHERNET),
    "QMI modem": (lambda r: r.interface("wwan0", arp=65534, devtype="wwan", driver="qmi_wwan",
                                        bus="usb", vendor="2c7c"),
                  Access.WWAN, Upstream.CELLULAR, Confidence.HIGH, LinkType.CELLULAR),
    "MBIM modem without DEVTYPE": (lambda r: r.interface("wwan0", driver="cdc_mbim", bus="usb"),
                                   Access.WWAN, Upstream.CELLULAR, Confidence.HIGH,
                                   LinkType.CELLULAR),
    "Huawei HiLink dongle (cdc_ether)": (
        lambda r: r.interface("eth1", driver="cdc_ether", bus="usb", vendor="12d1"),
        Access.USB, Upstream.CELLULAR, Confidence.MEDIUM, LinkType.CELLULAR),
    "Android USB tethering (rndis_host)": (
        lambda r: r.interface("usb0", driver="rndis_host", bus="usb", vendor="04e8"),
        Access.USB, Upstream.CELLULAR, Confidence.MEDIUM, LinkType.CELLULAR),
    "Android USB tethering (cdc_ncm, Google)": (
        lambda r: r.interface("usb0", driver="cdc_ncm", bus="usb", vendor="18d1"),
        Access.USB, Upstream.CELLULAR, Confidence.MEDIUM, LinkType.CELLULAR),
    "iPhone USB tethering (ipheth)": (
        lambda r: r.interface("eth1", driver="ipheth", bus="usb", vendor="05ac"),
        Access.USB, Upstream.CELLULAR, Confidence.HIGH, LinkType.CELLULAR),
    "Bluetooth tethering (bnep)": (
        lambda r: r.interface("bnep0", devtype="bluetooth", bus="bluetooth"),
        Access.UNKNOWN, Upstream.CELLULAR, Confidence.MEDIUM, LinkType.CELLULAR),
    "USB Ethernet adapter (r8152)": (
        lambda r: r.interface("enx001", driver="r8152", bus="usb", vendor="0bda"),
        Access.ETHERNET, Upstream.UNKNOWN, None, LinkType.ETHERNET),
    "USB Ethernet adapter in CDC mode (Realtek)": (
        lambda r: r.interface("enx002", driver="cdc_ether", bus="usb", vendor="0bda"),
        Access.ETHERNET, Upstream.UNKNOWN, None, LinkType.ETHERNET),
    "CDC device of unknown vendor": (
        lambda r: r.interface("usb0", driver="cdc_ether", bus="usb", vendor="1d6b"),
        Access.USB, Upstream.UNKNOWN, None, LinkType.UNKNOWN),
    "DSL over PPPoE": (lambda r: (r.interface("eth0", driver="r8169"),
                                  r.interface("ppp0", arp=512, virtual=True), r.pppoe("eth0")),
                       Access.ETHERNET, Upstream.FIXED, Confidence.MEDIUM, LinkType.ADSL),
    "3G dongle over PPP (option serial)": (
        lambda r: (r.interface("ppp0", arp=512, virtual=True), r.tty("ttyUSB0", "option")),
        Access.WWAN, Upstream.CELLULAR, Confidence.MEDIUM, LinkType.CELLULAR),
    "WireGuard VPN": (lambda r: r.interface("wg0", arp=65534, devtype="wireguard", virtual=True),
                      Access.UNKNOWN, Upstream.UNKNOWN, None, LinkType.UNKNOWN),
    "OpenVPN tun": (lambda r: r.interface("tun0", arp=65534, virtual=True, tun=True),
                    Access.UNKNOWN, Upstream.UNKNOWN, None, LinkType.UNKNOWN),
    "container veth": (lambda r: r.interface("eth0", virtual=True),
                       Access.UNKNOWN, Upstream.UNKNOWN, None, LinkType.UNKNOWN),
}


@pytest.mark.parametrize("name", list(SETUPS))
def test_each_setup_gives_its_access_link_and_upstream(tmp_path: Path, name: str) -> None:
    setup, access, upstream, confidence, link_type = SETUPS[name]
    root = FakeRoot(tmp_path)
    setup(root)
    interface = sorted(p.name for p in (tmp_path / "sys/class/net").iterdir())[-1]
    root.route(interface, "10.0.0.1")
    facts = detect_facts(Host(root=tmp_path, bus=None, platform="linux"))
    assert (facts.access, facts.upstream, facts.upstream_confidence, facts.link_type) == (
        access, upstream, confidence, link_type), facts.evidence
    expected_source = LinkSource.DRIVER if upstream is not Upstream.UNKNOWN else LinkSource.NONE
    assert facts.upstream_source is expected_source
    assert facts.evidence and all(len(e) <= 160 for e in facts.evidence)


def test_the_default_route_is_the_lowest_metric_one(tmp_path: Path) -> None:
    root = FakeRoot(tmp_path)
    root.route("wlan0", "192.168.1.1", metric=600).route("usb0", "192.168.42.129", metric=100)
    root.route("eth0", destination="10.0.0.0", mask="255.0.0.0")
    route = default_route(tmp_path)
    assert route is not None and route.interface == "usb0"
    assert str(route.gateway) == "192.168.42.129"


def test_no_route_or_no_interface_is_unknown(tmp_path: Path) -> None:
    facts = detect_facts(Host(root=tmp_path, bus=None, platform="linux"))
    assert facts.link_type is LinkType.UNKNOWN and facts.evidence == ("no IPv4 default route",)
    assert findings("gone0", tmp_path) == []


def test_a_modem_name_alone_is_cellular_with_less_confidence(tmp_path: Path) -> None:
    FakeRoot(tmp_path).interface("rmnet_data0", arp=519, driver="unknown_soc")
    facts = decide(findings("rmnet_data0", tmp_path))
    assert facts.upstream is Upstream.CELLULAR and facts.upstream_confidence is Confidence.MEDIUM
