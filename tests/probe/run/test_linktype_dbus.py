"""ModemManager and NetworkManager answers over a real dbus-daemon (a private
session bus), from small fake services that answer as their D-Bus APIs document."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from probe.core.record import Access, Confidence, LinkSource, LinkType, Upstream
from probe.run import linktype_dbus
from probe.run.linktype import Host, decide, detect_facts
from tests.support.fake_dbus import MM, NM, FakeService, Objects, session_bus
from tests.support.fakeroot import FakeRoot

NMP = "/org/freedesktop/NetworkManager"
MMP = "/org/freedesktop/ModemManager1"
DEVICE, ACTIVE, DHCP4, AP = (f"{NMP}/Devices/3", f"{NMP}/ActiveConnection/1",
                             f"{NMP}/DHCP4Config/1", f"{NMP}/AccessPoint/7")


@pytest.fixture(scope="module")
def bus() -> Iterator[str]:
    with session_bus() as address:
        yield address


def network_manager(interface: str, device_type: int, connection: str, metered: int = 0,
                    dhcp: dict[str, tuple[str, object]] | None = None,
                    bssid: str | None = None) -> Objects:
    """NetworkManager's objects for one active device (NMDeviceType, NMMetered)."""
    device = {"Interface": ("s", interface), "IpInterface": ("s", interface),
              "DeviceType": ("u", device_type), "Metered": ("u", metered),
              "ActiveConnection": ("o", ACTIVE), "Dhcp4Config": ("o", DHCP4 if dhcp else "/")}
    objects: Objects = {
        NMP: {NM: {"PrimaryConnection": ("o", ACTIVE)}},
        DEVICE: {f"{NM}.Device": device,
                 f"{NM}.Device.Wireless": {"ActiveAccessPoint": ("o", AP if bssid else "/")}},
        ACTIVE: {f"{NM}.Connection.Active": {"Type": ("s", connection),
                                             "Devices": ("ao", [DEVICE])}},
    }
    if dhcp:
        objects[DHCP4] = {f"{NM}.DHCP4Config": {"Options": ("a{sv}", dhcp)}}
    if bssid:
        objects[AP] = {f"{NM}.AccessPoint": {"HwAddress": ("s", bssid)}}
    return objects


def modem_manager(interface: str, technologies: int, state: int = 11) -> Objects:
    """ModemManager's modem (ports: MMModemPortType, 2 = net) with one connected bearer."""
    bearer = f"{MMP}/Bearer/0"
    return {
        f"{MMP}/Modem/0": {f"{MM}.Modem": {
            "Ports": ("a(su)", [("cdc-wdm0", 6), (interface, 2)]), "State": ("i", state),
            "AccessTechnologies": ("u", technologies), "Bearers": ("ao", [bearer])}},
        bearer: {f"{MM}.Bearer": {"Interface": ("s", interface), "Connected": ("b", True)}},
    }


def test_a_modem_carrying_the_route_is_certain(bus: str) -> None:
    objects = {**modem_manager("wwan0", 1 << 14),
               **network_manager("wwan0", 8, "gsm", metered=3)}
    with FakeService(bus, [MM, NM], objects, devices=[DEVICE]):
        found = linktype_dbus.findings("wwan0", bus)
    facts = decide(found)
    assert (facts.access, facts.upstream, facts.upstream_source, facts.upstream_confidence) == (
        Access.WWAN, Upstream.CELLULAR, LinkSource.MODEM, Confidence.HIGH)
    assert "access technology 4G" in facts.evidence[0]


def test_a_3g_modem_not_on_the_route_says_so_only(bus: str) -> None:
    with FakeService(bus, [MM], modem_manager("wwan0", 1 << 6)):
        found = linktype_dbus.findings("eth0", bus)
    assert [(f.access, f.upstream) for f in found] == [(None, None)]
    assert "does not carry the default route" in found[0].evidence


def test_wifi_on_an_android_hotspot_from_networkmanager(bus: str) -> None:
    objects = network_manager("wlan0", 2, "802-11-wireless", metered=3, bssid="02:1A:11:F3:00:01",
                              dhcp={"vendor_encapsulated_options": ("s", "ANDROID_METERED"),
                                    "ip_address": ("s", "10.42.0.7")})
    with FakeService(bus, [NM], objects, devices=[DEVICE]):
        facts = decide(linktype_dbus.findings("wlan0", bus))
    assert (facts.link_type, facts.access, facts.upstream) == (
        LinkType.CELLULAR, Access.WIFI, Upstream.CELLULAR)
    assert (facts.upstream_source, facts.upstream_confidence) == (
        LinkSource.NETWORKMANAGER, Confidence.MEDIUM)
    assert any("ANDROID_METERED (NetworkManager)" in e for e in facts.evidence)
    assert any("02:1a:11" in e for e in facts.evidence)


def test_home_wifi_and_a_pppoe_line(bus: str) -> None:
    with FakeService(bus, [NM], network_manager("wlan0", 2, "802-11-wireless", metered=4),
                     devices=[DEVICE]):
        facts = decide(linktype_dbus.findings("wlan0", bus))
    assert (facts.link_type, facts.upstream) == (LinkType.WIFI, Upstream.UNKNOWN)
    assert "NetworkManager: metered guess-no" in facts.evidence
    with FakeService(bus, [NM], network_manager("ppp0", 23, "pppoe"), devices=[DEVICE]):
        facts = decide(linktype_dbus.findings("ppp0", bus))
    assert (facts.upstream, facts.link_type) == (Upstream.FIXED, LinkType.ADSL)


def test_networkmanager_and_sysfs_together_on_an_android_usb_tether(
        bus: str, tmp_path: Path) -> None:
    root = FakeRoot(tmp_path)
    root.interface("usb0", driver="rndis_host", bus="usb", vendor="2717").route("usb0",
                                                                                "192.168.42.129")
    with FakeService(bus, [NM], network_manager("usb0", 1, "802-3-ethernet", metered=3),
                     devices=[DEVICE]):
        facts = detect_facts(Host(root=tmp_path, bus=bus, platform="linux"))
    # NetworkManager calls it Ethernet (low); the driver knows it is a USB tether
    assert (facts.access, facts.access_source) == (Access.USB, LinkSource.DRIVER)
    assert (facts.upstream, facts.upstream_source, facts.link_type) == (
        Upstream.CELLULAR, LinkSource.NETWORKMANAGER, LinkType.CELLULAR)


def test_no_service_no_bus_and_a_hung_bus_give_no_evidence_quickly(bus: str) -> None:
    assert linktype_dbus.findings("wlan0", bus) == []  # a bus with nobody on it
    assert linktype_dbus.findings("wlan0", "unix:path=/nonexistent/bus") == []
    assert linktype_dbus.findings("wlan0", None) == []
    objects = network_manager("wlan0", 2, "802-11-wireless")
    with FakeService(bus, [NM], objects, devices=[DEVICE], delay=1.2):
        start = time.monotonic()
        found = linktype_dbus.findings("wlan0", bus, deadline=0.5)
        assert time.monotonic() - start < 1.5
    assert [f.evidence for f in found] == ["D-Bus did not answer within 0.5 s"]
