"""Fixture trees standing for a Linux machine's /sys, /proc and DHCP lease files,
laid out as the kernel documents them (Documentation/ABI/testing/sysfs-class-net:
`type` is the ARPHRD_* number, `uevent` carries DEVTYPE, `device` links to the
bus device, `device/driver` to its driver; a USB interface's parent directory
is the USB device with `idVendor`) and as each DHCP client writes its leases."""

from __future__ import annotations

import os
import struct
from ipaddress import IPv4Address
from pathlib import Path

from probe.wire.dhcp import MAGIC_COOKIE


def _hex_le(address: str) -> str:
    return int(IPv4Address(address)).to_bytes(4, "little").hex().upper()


class FakeRoot:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.routes: list[str] = []
        self.next_index = 2

    def path(self, relative: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def interface(self, name: str, *, arp: int = 1, devtype: str = "", driver: str = "",
                  bus: str = "pci", vendor: str = "", wireless: bool = False,
                  virtual: bool = False, tun: bool = False) -> FakeRoot:
        """/sys/class/net/NAME, its device (on `bus`) and driver, like the kernel's."""
        net = self.path(f"sys/class/net/{name}/x").parent
        (net / "type").write_text(f"{arp}\n")
        (net / "ifindex").write_text(f"{self.next_index}\n")
        self.next_index += 1
        (net / "uevent").write_text(f"INTERFACE={name}\n" + (f"DEVTYPE={devtype}\n"
                                                              if devtype else ""))
        if wireless:
            (net / "wireless").mkdir()
        if tun:
            (net / "tun_flags").write_text("0x1001\n")
        if virtual:
            return self
        if bus == "usb":
            usb_device = self.path(f"sys/devices/usb1/1-1/{name}/x").parent
            if vendor:
                (usb_device / "idVendor").write_text(f"{vendor}\n")
            device = usb_device / "1-1:1.0"
        else:
            device = self.path(f"sys/devices/{bus}0/{name}-dev/x").parent
        device.mkdir(parents=True, exist_ok=True)
        bus_dir = self.path(f"sys/bus/{bus}/x").parent
        os.symlink(bus_dir, device / "subsystem")
        if driver:
            driver_dir = self.path(f"sys/bus/{bus}/drivers/{driver}/x").parent
            os.symlink(driver_dir, device / "driver")
        os.symlink(device, net / "device")
        return self

    def tty(self, name: str, driver: str) -> FakeRoot:
        device = self.path(f"sys/devices/usb1/1-2/{name}/x").parent
        driver_dir = self.path(f"sys/bus/usb-serial/drivers/{driver}/x").parent
        os.symlink(driver_dir, device / "driver")
        tty = self.path(f"sys/class/tty/{name}/x").parent
        os.symlink(device, tty / "device")
        return self

    def route(self, interface: str, gateway: str = "0.0.0.0", destination: str = "0.0.0.0",
              mask: str = "0.0.0.0", metric: int = 0) -> FakeRoot:
        """A line of /proc/net/route (addresses in host byte order, hex)."""
        self.routes.append(f"{interface}\t{_hex_le(destination)}\t{_hex_le(gateway)}\t0003\t0\t0"
                           f"\t{metric}\t{_hex_le(mask)}\t0\t0\t0")
        self.path("proc/net/route").write_text(
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow"
            "\tIRTT\n" + "\n".join(self.routes) + "\n")
        return self

    def pppoe(self, device: str) -> FakeRoot:
        self.path("proc/net/pppoe").write_text(
            f"Id       Address              Device\n00000a2b 00:11:22:33:44:55 {device}\n")
        return self

    def ifindex(self, name: str) -> str:
        return (self.root / f"sys/class/net/{name}/ifindex").read_text().strip()

    def write(self, relative: str, data: str | bytes) -> Path:
        path = self.path(relative)
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data)
        return path


def bootreply(yiaddr: str, options: list[tuple[int, bytes]], file: bytes = b"",
              sname: bytes = b"") -> bytes:
    """A DHCPACK as RFC 2131 lays it out (what dhcpcd writes as its lease file)."""
    header = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 2, 1, 6, 0, 0x3903F326, 0, 0,
                         bytes(4), IPv4Address(yiaddr).packed, bytes(4), bytes(4),
                         bytes(16), sname.ljust(64, b"\0"), file.ljust(128, b"\0"))
    body = b"".join(bytes([code, len(value)]) + value for code, value in options)
    return header + MAGIC_COOKIE + body + b"\xff"
