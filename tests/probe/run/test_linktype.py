from __future__ import annotations

from pathlib import Path

from probe.core.record import LinkType
from probe.run.linktype import classify_interface, default_interface


def fake_device(root: Path, name: str, *, arp: str = "1", uevent: str = "",
                wireless: bool = False) -> None:
    device = root / name
    device.mkdir(parents=True)
    (device / "type").write_text(arp + "\n")
    (device / "uevent").write_text(uevent)
    if wireless:
        (device / "wireless").mkdir()


def test_classification(tmp_path: Path) -> None:
    fake_device(tmp_path, "wlan0", uevent="DEVTYPE=wlan\n", wireless=True)
    fake_device(tmp_path, "wwan0", arp="65534", uevent="DEVTYPE=wwan\n")
    fake_device(tmp_path, "eth0", uevent="INTERFACE=eth0\n")
    fake_device(tmp_path, "br0", uevent="DEVTYPE=bridge\n")
    fake_device(tmp_path, "rmnet_data0", arp="519")
    assert classify_interface("wlan0", tmp_path) is LinkType.WIFI
    assert classify_interface("wwan0", tmp_path) is LinkType.CELLULAR
    assert classify_interface("rmnet_data0", tmp_path) is LinkType.CELLULAR
    assert classify_interface("eth0", tmp_path) is LinkType.ETHERNET
    assert classify_interface("br0", tmp_path) is LinkType.UNKNOWN
    assert classify_interface("missing0", tmp_path) is LinkType.UNKNOWN


def test_default_route_interface(tmp_path: Path) -> None:
    table = tmp_path / "route"
    table.write_text(
        "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\t\n"
        "eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n"
        "wlan0\t00000000\t0100A8C0\t0003\t0\t0\t600\t00000000\n"
        "wwan0\t00000000\t0100000A\t0003\t0\t0\t700\t00000000\n"
    )
    assert default_interface(table) == "wlan0"
    assert default_interface(tmp_path / "absent") is None
