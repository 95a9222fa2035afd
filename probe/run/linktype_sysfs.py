"""What the Linux kernel shows of the default route's interface: the routing
table (/proc/net/route), the interface in /sys/class/net (DEVTYPE, its driver,
the USB vendor of its device) and PPPoE sessions (/proc/net/pppoe).

USB modems and tethered phones mostly look like Ethernet to the kernel: a
HiLink dongle is `cdc_ether`, an Android phone's USB tethering `rndis_host`
(or `cdc_ncm` on recent phones), an iPhone's `ipheth`. The driver, and for the
generic CDC drivers the USB vendor, tell them from a USB Ethernet adapter.
Vendor IDs and names are those of the USB ID database (usb.ids).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from probe.core.record import Access, Confidence, LinkSource, Upstream
from probe.run.linktype import Finding

ARPHRD_ETHER = 1
ARPHRD_PPP = 512
ARPHRD_NONE = 65534  # raw-IP: modems in raw-ip mode, and tunnels

D, H, M, L = LinkSource.DRIVER, Confidence.HIGH, Confidence.MEDIUM, Confidence.LOW

# drivers of cellular modems: the interface is the modem's data channel
WWAN_DRIVERS = {
    "qmi_wwan": "Qualcomm QMI modem", "cdc_mbim": "MBIM modem",
    "huawei_cdc_ncm": "Huawei NCM modem", "sierra_net": "Sierra Wireless modem",
    "hso": "Option HSO modem", "kalmia": "Samsung LTE modem", "mhi_net": "PCIe modem (MHI)",
    "t7xx": "MediaTek T700 modem", "iosm": "Intel M.2 modem", "rmnet": "Qualcomm rmnet",
    "ipa": "Qualcomm IPA modem",
}
# serial drivers of USB modems driven with AT commands and pppd (classic 3G dongles)
SERIAL_MODEM_DRIVERS = {"option", "option1", "qcserial", "sierra", "hso", "huawei_cdc_ncm"}
# USB Ethernet adapters (a Raspberry Pi 1-3's own Ethernet port is smsc95xx/lan78xx)
USB_ETHERNET_DRIVERS = {"r8152", "ax88179_178a", "asix", "smsc95xx", "smsc75xx", "lan78xx",
                        "dm9601", "mcs7830", "sr9700", "pegasus", "rtl8150", "aqc111"}
# generic USB class drivers: a modem, a phone or an Ethernet adapter, as the vendor says
CDC_DRIVERS = {"cdc_ether", "cdc_ncm", "cdc_eem", "cdc_subset"}
# usb.ids: makers of phones and cellular modems
PHONE_OR_MODEM_VENDORS = {
    "12d1": "Huawei", "19d2": "ZTE", "1bbb": "T & A Mobile Phones (Alcatel)",
    "2c7c": "Quectel", "1199": "Sierra Wireless", "05c6": "Qualcomm", "1e0e": "Qualcomm / Option",
    "2cb7": "Fibocom", "1bc7": "Telit", "1410": "Novatel Wireless", "0af0": "Option",
    "1e2d": "Gemalto M2M", "04e8": "Samsung", "18d1": "Google", "22b8": "Motorola",
    "2717": "Xiaomi", "0bb4": "HTC", "1004": "LG", "2a70": "OnePlus", "22d9": "OPPO",
    "0e8d": "MediaTek", "1782": "Spreadtrum", "2e04": "HMD Global", "0fce": "Sony Ericsson",
}
# usb.ids: makers of USB Ethernet chips
ETHERNET_CHIP_VENDORS = {"0bda": "Realtek", "0b95": "ASIX", "0424": "Microchip (SMSC)"}


@dataclass(frozen=True)
class Route:
    interface: str
    destination: IPv4Address
    gateway: IPv4Address
    mask: IPv4Address
    metric: int


def _address(hex_le: str) -> IPv4Address:
    return IPv4Address(int.from_bytes(bytes.fromhex(hex_le), "little"))


def routes(root: Path) -> list[Route]:
    """The IPv4 routing table (/proc/net/route: addresses in host byte order, hex)."""
    try:
        lines = (root / "proc/net/route").read_text().splitlines()[1:]
    except OSError:
        return []
    out = []
    for line in lines:
        fields = line.split()
        try:
            out.append(Route(fields[0], _address(fields[1]), _address(fields[2]),
                             _address(fields[7]), int(fields[6])))
        except (IndexError, ValueError):
            continue
    return out


def default_route(root: Path) -> Route | None:
    defaults = [r for r in routes(root) if int(r.destination) == 0 and int(r.mask) == 0]
    return min(defaults, key=lambda r: r.metric) if defaults else None


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _link_name(path: Path) -> str:
    """The last part of a sysfs symlink's target (a driver's or a bus's name)."""
    try:
        return os.path.basename(os.readlink(path))
    except OSError:
        return ""


def _usb_vendor(device: Path) -> str:
    """idVendor of the USB device a network interface belongs to (its parent)."""
    try:
        real = device.resolve(strict=True)
    except OSError:
        return ""
    for candidate in (real, real.parent):
        vendor = _read(candidate / "idVendor").lower()
        if vendor:
            return vendor
    return ""


def _pppoe_sessions(root: Path) -> bool:
    return len(_read(root / "proc/net/pppoe").splitlines()) > 1


def _serial_modem(root: Path) -> str:
    """The driver of a USB modem's serial port, if one is plugged in."""
    try:
        ttys = sorted((root / "sys/class/tty").iterdir())
    except OSError:
        return ""
    for tty in ttys:
        driver = _link_name(tty / "device/driver")
        if driver in SERIAL_MODEM_DRIVERS:
            return driver
    return ""


def findings(interface: str, root: Path) -> list[Finding]:
    """What sysfs says of `interface` (the default route's)."""
    net = root / "sys/class/net" / interface
    if not net.exists():
        return []
    uevent = dict(line.split("=", 1) for line in _read(net / "uevent").splitlines()
                  if "=" in line)
    devtype = uevent.get("DEVTYPE", "")
    arp = _read(net / "type")
    arp_type = int(arp) if arp.isdigit() else -1
    device = net / "device"
    driver = _link_name(device / "driver")
    named = f"driver {driver}" if driver else "no driver"
    if (net / "wireless").exists() or (net / "phy80211").exists() or devtype == "wlan":
        return [Finding(D, H, f"Wi-Fi interface ({named})", Access.WIFI)]
    if devtype == "wwan":
        return [Finding(D, H, f"DEVTYPE=wwan: a cellular modem ({named})", Access.WWAN,
                        Upstream.CELLULAR)]
    if devtype == "bluetooth":  # bnep: Bluetooth PAN, tethering to a phone
        return [Finding(D, M, "Bluetooth network (PAN): tethering to a phone",
                        upstream=Upstream.CELLULAR)]
    if driver in WWAN_DRIVERS:
        return [Finding(D, H, f"driver {driver}: {WWAN_DRIVERS[driver]}", Access.WWAN,
                        Upstream.CELLULAR)]
    if driver == "ipheth":
        return [Finding(D, H, "driver ipheth: an iPhone's USB tethering, which shares only "
                        "its cellular data", Access.USB, Upstream.CELLULAR)]
    if driver == "rndis_host":
        return [Finding(D, M, "driver rndis_host: a phone's USB tethering or a modem in "
                        "router mode", Access.USB, Upstream.CELLULAR)]
    if driver in CDC_DRIVERS:
        vendor = _usb_vendor(device)
        if vendor in PHONE_OR_MODEM_VENDORS:
            return [Finding(D, M, f"driver {driver}, USB vendor {vendor} "
                            f"({PHONE_OR_MODEM_VENDORS[vendor]}): a modem or a tethered phone",
                            Access.USB, Upstream.CELLULAR)]
        if vendor in ETHERNET_CHIP_VENDORS:
            return [Finding(D, M, f"driver {driver}, USB vendor {vendor} "
                            f"({ETHERNET_CHIP_VENDORS[vendor]}): a USB Ethernet adapter",
                            Access.ETHERNET)]
        return [Finding(D, L, f"driver {driver}, USB vendor {vendor or 'unknown'}: a USB "
                        "network device of unknown kind", Access.USB)]
    if driver in USB_ETHERNET_DRIVERS:
        return [Finding(D, H, f"driver {driver}: a USB Ethernet adapter", Access.ETHERNET)]
    if arp_type == ARPHRD_PPP or interface.startswith("ppp"):
        if _pppoe_sessions(root):
            return [Finding(D, M, "PPP over PPPoE: a DSL or fibre line", Access.ETHERNET,
                            Upstream.FIXED)]
        serial = _serial_modem(root)
        if serial:
            return [Finding(D, M, f"PPP with a USB modem's serial port (driver {serial})",
                            Access.WWAN, Upstream.CELLULAR)]
        return [Finding(D, L, "a PPP link of unknown kind")]
    if not device.exists():
        if (net / "tun_flags").exists() or devtype == "wireguard" or arp_type == ARPHRD_NONE:
            return [Finding(D, L, "a tunnel (VPN): the link under it is not seen")]
        kind = devtype or "virtual"
        return [Finding(D, L, f"a {kind} interface (bridge, container or VM): the link "
                        "under it is not seen")]
    if arp_type == ARPHRD_NONE:
        return [Finding(D, M, f"raw-IP interface of a device ({named}): a modem",
                        Access.WWAN, Upstream.CELLULAR)]
    if interface.startswith(("wwan", "rmnet", "ccmni")):
        return [Finding(D, M, f"a modem's interface name ({named})", Access.WWAN,
                        Upstream.CELLULAR)]
    if arp_type == ARPHRD_ETHER and not devtype:
        bus = _link_name(device / "subsystem")
        if bus == "usb":
            return [Finding(D, L, f"a USB network device ({named})", Access.USB)]
        return [Finding(D, H, f"Ethernet ({named})", Access.ETHERNET)]
    return [Finding(D, L, f"interface of kind {devtype or arp_type} ({named})")]
