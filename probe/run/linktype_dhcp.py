"""Phone hotspots recognised by what they hand out.

- Android's tethering (Wi-Fi hotspot, USB, Bluetooth) sends DHCP option 43
  (vendor-specific) with the text `ANDROID_METERED` (its `IpServer` sets
  `metered` for every tethering DHCP server). The phone's own upstream is
  almost always cellular, but a recent phone can share a Wi-Fi network too:
  `medium`.
- An iPhone's Personal Hotspot uses 172.20.10.0/28 (router 172.20.10.1);
  older Android hotspots 192.168.43.0/24, their USB tethering
  192.168.42.0/24; Huawei HiLink modems and 4G routers 192.168.8.0/24. Any
  router may use those: `low`, hints only.

The option is read from the lease of the default route's interface, as each
DHCP client keeps it: dhclient (and NetworkManager's dhclient backend), systemd-
networkd (key=value files, JSON since systemd 257), dhcpcd (the raw
BOOTREPLY). NetworkManager's internal client keeps only the address on disk;
its options come over D-Bus (linktype_dbus).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from probe.core.record import Confidence, LinkSource, Upstream
from probe.run.linktype import Finding
from probe.wire import dhcp

ANDROID_METERED = b"ANDROID_METERED"
MAX_LEASE_BYTES = 1 << 20

HOTSPOT_SUBNETS = (
    (IPv4Network("172.20.10.0/28"), "the iPhone Personal Hotspot's subnet"),
    (IPv4Network("192.168.43.0/24"), "older Android hotspots' subnet"),
    (IPv4Network("192.168.42.0/24"), "older Android USB tethering's subnet"),
    (IPv4Network("192.168.8.0/24"), "Huawei HiLink modems' and 4G routers' subnet"),
)


@dataclass(frozen=True)
class Lease:
    client: str  # dhclient | networkd | dhcpcd | networkmanager
    vendor_specific: bytes | None = None
    address: IPv4Address | None = None
    router: IPv4Address | None = None


def _read_bytes(path: Path) -> bytes | None:
    try:
        with path.open("rb") as handle:
            return handle.read(MAX_LEASE_BYTES)
    except OSError:
        return None


def _ip(text: str | None) -> IPv4Address | None:
    try:
        return IPv4Address(text.strip()) if text else None
    except ValueError:
        return None


def _option_value(text: str) -> bytes:
    """A dhclient option value: "quoted text" or colon-separated hex bytes."""
    text = text.strip()
    if text.startswith('"') and text.endswith('"'):
        return text[1:-1].encode("utf-8", "replace")
    try:
        return bytes(int(part, 16) for part in text.split(":"))
    except ValueError:
        return text.encode("utf-8", "replace")


_BLOCK = re.compile(r"lease\s*\{(.*?)\}", re.S)


def parse_dhclient(text: str, interface: str) -> Lease | None:
    """The last `lease { ... }` of `interface` in a dhclient lease file."""
    found: Lease | None = None
    for block in _BLOCK.findall(text):
        settings: dict[str, str] = {}
        for statement in block.split(";"):
            words = statement.strip().split(None, 2)
            if len(words) >= 2 and words[0] == "option":
                settings[words[1]] = words[2] if len(words) > 2 else ""
            elif len(words) >= 2:
                settings[words[0]] = statement.strip()[len(words[0]):].strip()
        if settings.get("interface", f'"{interface}"').strip('"') != interface:
            continue
        vendor = settings.get("vendor-encapsulated-options")
        router = settings.get("routers", "").split(",")[0]
        found = Lease("dhclient", _option_value(vendor) if vendor is not None else None,
                      _ip(settings.get("fixed-address")), _ip(router))
    return found


def parse_networkd(text: str) -> Lease | None:
    """A systemd-networkd lease: JSON (systemd >= 257) or KEY=value lines."""
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            return None
        vendor = data.get("Vendor_Specific")
        routers = data.get("Router") or []
        return Lease("networkd", _unhex(vendor), _json_ip(data.get("Address")),
                     _json_ip(routers[0]) if routers else None)
    values = dict(line.split("=", 1) for line in text.splitlines()
                  if "=" in line and not line.startswith("#"))
    return Lease("networkd", _unhex(values.get("VENDOR_SPECIFIC")), _ip(values.get("ADDRESS")),
                 _ip((values.get("ROUTER") or "").split(" ")[0]))


def _unhex(value: object) -> bytes | None:
    if isinstance(value, str):
        try:
            return bytes.fromhex(value)
        except ValueError:
            return None
    if isinstance(value, list) and all(isinstance(v, int) for v in value):
        return bytes(v & 0xFF for v in value)
    return None


def _json_ip(value: object) -> IPv4Address | None:
    if isinstance(value, list) and len(value) == 4:
        return IPv4Address(bytes(int(v) & 0xFF for v in value))
    return _ip(value) if isinstance(value, str) else None


def parse_dhcpcd(data: bytes) -> Lease | None:
    """A dhcpcd lease file: the DHCP message itself."""
    try:
        options = dhcp.options(data)
        routers = dhcp.routers(options.get(dhcp.ROUTER, b""))
        return Lease("dhcpcd", options.get(dhcp.VENDOR_SPECIFIC), dhcp.your_address(data),
                     routers[0] if routers else None)
    except ValueError:
        return None


def _newest(paths: list[Path]) -> list[Path]:
    def mtime(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except OSError:
            return 0.0
    return sorted(paths, key=mtime, reverse=True)


def _glob(directory: Path, pattern: str) -> list[Path]:
    try:
        return list(directory.glob(pattern))
    except OSError:
        return []


def leases(interface: str, root: Path) -> list[Lease]:
    """The leases each DHCP client keeps for `interface`, newest file first per client."""
    out: list[Lease] = []
    ifindex = (root / "sys/class/net" / interface / "ifindex")
    index = ifindex.read_text().strip() if ifindex.exists() else ""
    if index.isdigit():
        data = _read_bytes(root / "run/systemd/netif/leases" / index)
        lease = parse_networkd(data.decode("utf-8", "replace")) if data else None
        if lease:
            out.append(lease)
    dhclient = (_glob(root / "var/lib/dhcp", "dhclient*.lease*")
                + _glob(root / "var/lib/dhclient", "*.lease*")
                + _glob(root / "var/lib/NetworkManager", f"dhclient-*{interface}.lease"))
    for path in _newest(dhclient):
        data = _read_bytes(path)
        lease = parse_dhclient(data.decode("utf-8", "replace"), interface) if data else None
        if lease:
            out.append(lease)
            break
    dhcpcd = [p for d in ("var/lib/dhcpcd", "var/lib/dhcpcd5", "var/db/dhcpcd")
              for p in _glob(root / d, f"*{interface}*.lease")]
    for path in _newest(dhcpcd):
        data = _read_bytes(path)
        lease = parse_dhcpcd(data) if data else None
        if lease:
            out.append(lease)
            break
    for path in _newest(_glob(root / "var/lib/NetworkManager", f"internal-*-{interface}.lease")):
        data = _read_bytes(path)
        values = dict(line.split("=", 1) for line in (data or b"").decode("utf-8", "replace")
                      .splitlines() if "=" in line)
        if values.get("ADDRESS"):
            out.append(Lease("networkmanager", None, _ip(values["ADDRESS"])))
            break
    return out


def vendor_finding(vendor: bytes | None, where: str) -> Finding | None:
    if vendor and ANDROID_METERED in vendor:
        return Finding(LinkSource.HOTSPOT, Confidence.MEDIUM,
                       f"DHCP option 43 ANDROID_METERED ({where}): an Android phone's "
                       "hotspot or tethering", upstream=Upstream.CELLULAR)
    return None


def subnet_findings(addresses: list[IPv4Address | None]) -> list[Finding]:
    """Weak hints from well-known hotspot subnets (the address itself is never recorded)."""
    out: list[Finding] = []
    for network, what in HOTSPOT_SUBNETS:
        if any(a is not None and a in network for a in addresses):
            out.append(Finding(LinkSource.HOTSPOT, Confidence.LOW,
                               f"address in {network}, {what}", upstream=Upstream.CELLULAR))
    return out


def findings(interface: str, root: Path, gateway: IPv4Address | None) -> list[Finding]:
    out: list[Finding] = []
    seen = leases(interface, root)
    for lease in seen:
        found = vendor_finding(lease.vendor_specific, f"{lease.client} lease")
        if found:
            out.append(found)
            break
    addresses = [gateway] + [a for lease in seen for a in (lease.router, lease.address)]
    return out + subnet_findings(addresses)
