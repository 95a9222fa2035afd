"""macOS and Windows laptops: whatever their own tools say, else nothing.

macOS: `route -n get default` (the default route's interface and gateway),
`networksetup -listallhardwareports` (the hardware port of that interface:
"Wi-Fi", "iPhone USB", "Bluetooth PAN", an Ethernet adapter...) and
`ipconfig getpacket IF` (the DHCP reply, with option 43 when an Android phone
serves it).

Windows: one PowerShell command (`Get-NetRoute`, `Get-NetAdapter` and the
WinRT connection profile: `IsWwanConnectionProfile`, `IsWlanConnectionProfile`,
the connection cost) answering JSON, and `netsh wlan show interfaces` for a
Wi-Fi access point's BSSID. Adapter descriptions name USB tethering:
"Remote NDIS based Internet Sharing Device" (an Android phone), "Apple Mobile
Device Ethernet" (an iPhone).

Each command has a short timeout; a missing tool, a failure or an answer we
cannot read yields no finding. The parsers are pure functions of the text,
tested on captured outputs (tests/data/linktype/).
"""

from __future__ import annotations

import json
import re
from ipaddress import IPv4Address

from probe.core.record import Access, Confidence, LinkSource, Upstream
from probe.run.linktype import Finding, Runner
from probe.run.linktype_dhcp import subnet_findings, vendor_finding

TIMEOUT = 2.0
POWERSHELL_TIMEOUT = 5.0  # PowerShell alone takes about a second to start

OS, HS = LinkSource.OS, LinkSource.HOTSPOT
H, M, L = Confidence.HIGH, Confidence.MEDIUM, Confidence.LOW


def _ip(text: str) -> IPv4Address | None:
    try:
        return IPv4Address(text.strip())
    except ValueError:
        return None


# --- macOS -------------------------------------------------------------------

def parse_route_get(text: str) -> tuple[str | None, IPv4Address | None]:
    """`route -n get default`: (interface, gateway)."""
    fields = dict(line.strip().split(":", 1) for line in text.splitlines() if ":" in line)
    interface = fields.get("interface", "").strip() or None
    return interface, _ip(fields.get("gateway", ""))


def parse_hardware_ports(text: str) -> dict[str, str]:
    """`networksetup -listallhardwareports`: device -> hardware port name."""
    ports: dict[str, str] = {}
    port = None
    for line in text.splitlines():
        if line.startswith("Hardware Port:"):
            port = line.split(":", 1)[1].strip()
        elif line.startswith("Device:") and port is not None:
            ports[line.split(":", 1)[1].strip()] = port
            port = None
    return ports


_PORTS: tuple[tuple[re.Pattern[str], Finding], ...] = (
    (re.compile(r"^(Wi-Fi|AirPort)$", re.I), Finding(OS, H, "macOS: a Wi-Fi port", Access.WIFI)),
    (re.compile(r"^(iPhone|iPad) USB$", re.I),
     Finding(OS, H, "macOS: iPhone USB tethering, which shares only its cellular data",
             Access.USB, Upstream.CELLULAR)),
    (re.compile(r"Bluetooth PAN", re.I),
     Finding(OS, M, "macOS: Bluetooth tethering to a phone", upstream=Upstream.CELLULAR)),
    (re.compile(r"Android|RNDIS|Pixel|Galaxy", re.I),
     Finding(OS, M, "macOS: an Android phone's USB tethering", Access.USB, Upstream.CELLULAR)),
    (re.compile(r"Thunderbolt Bridge", re.I),
     Finding(OS, L, "macOS: a Thunderbolt bridge: the link under it is not seen")),
    (re.compile(r"Ethernet|LAN", re.I), Finding(OS, M, "macOS: an Ethernet port", Access.ETHERNET)),
)


def port_finding(port: str | None) -> Finding | None:
    if port is None:
        return None
    for pattern, finding in _PORTS:
        if pattern.search(port):
            return finding
    return Finding(OS, L, "macOS: a hardware port of unknown kind")


_HEX_ROW = re.compile(r"^\s*[0-9a-fA-F]{4}\s+((?:[0-9a-fA-F]{2}\s+){1,16})")


def parse_getpacket(text: str) -> tuple[bytes | None, list[IPv4Address | None]]:
    """`ipconfig getpacket IF`: option 43's bytes, and the addresses (yiaddr, routers)."""
    vendor: bytes | None = None
    addresses: list[IPv4Address | None] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("yiaddr"):
            addresses.append(_ip(line.split("=", 1)[1]))
        elif line.startswith("router"):
            addresses += [_ip(a) for a in re.findall(r"[0-9.]+", line.split(":", 1)[1])]
        elif line.startswith("vendor_specific"):
            data = bytearray()
            for row in lines[i + 1:]:
                match = _HEX_ROW.match(row)
                if not match:
                    break
                data += bytes.fromhex("".join(match.group(1).split()))
            vendor = bytes(data)
    if vendor is None and "ANDROID_METERED" in text:
        vendor = b"ANDROID_METERED"
    return vendor, addresses


def macos_findings(run: Runner) -> list[Finding]:
    route = run(["route", "-n", "get", "default"], TIMEOUT)
    interface, gateway = parse_route_get(route) if route else (None, None)
    if interface is None:
        return [Finding(LinkSource.NONE, L, "macOS: no default route seen")]
    ports = run(["networksetup", "-listallhardwareports"], TIMEOUT)
    out = [f for f in [port_finding(parse_hardware_ports(ports or "").get(interface))] if f]
    packet = run(["ipconfig", "getpacket", interface], TIMEOUT)
    vendor, addresses = parse_getpacket(packet) if packet else (None, [])
    found = vendor_finding(vendor, "macOS ipconfig")
    if found:
        out.append(found)
    return out + subnet_findings([gateway, *addresses])


# --- Windows -----------------------------------------------------------------

POWERSHELL_SCRIPT = (
    "$ErrorActionPreference='SilentlyContinue';"
    "$r=Get-NetRoute -DestinationPrefix '0.0.0.0/0'|Sort-Object RouteMetric|Select-Object -First 1;"
    "$a=if($r){Get-NetAdapter -InterfaceIndex $r.ifIndex};"
    "$p=[Windows.Networking.Connectivity.NetworkInformation,Windows.Networking.Connectivity,"
    "ContentType=WindowsRuntime]::GetInternetConnectionProfile();"
    "[pscustomobject]@{gateway=\"$($r.NextHop)\";description=\"$($a.InterfaceDescription)\";"
    "media=\"$($a.PhysicalMediaType)\";wwan=[bool]$p.IsWwanConnectionProfile;"
    "wlan=[bool]$p.IsWlanConnectionProfile;cost=\"$($p.GetConnectionCost().NetworkCostType)\"}"
    "|ConvertTo-Json -Compress"
)
POWERSHELL = ["powershell", "-NoProfile", "-NonInteractive", "-Command", POWERSHELL_SCRIPT]

_ADAPTERS: tuple[tuple[re.Pattern[str], Finding], ...] = (
    (re.compile(r"Remote NDIS", re.I),
     Finding(OS, M, "Windows: a Remote NDIS adapter, a phone's USB tethering", Access.USB,
             Upstream.CELLULAR)),
    (re.compile(r"Apple Mobile Device Ethernet", re.I),
     Finding(OS, H, "Windows: iPhone USB tethering, which shares only its cellular data",
             Access.USB, Upstream.CELLULAR)),
    (re.compile(r"Mobile Broadband|WWAN|Cellular", re.I),
     Finding(OS, H, "Windows: a mobile broadband adapter", Access.WWAN, Upstream.CELLULAR)),
)


def parse_windows(text: str) -> list[Finding]:
    """The PowerShell command's JSON answer."""
    try:
        data = json.loads(text)
    except ValueError:
        return []
    if not isinstance(data, dict):
        return []
    out: list[Finding] = []
    description = str(data.get("description") or "")
    media = str(data.get("media") or "")
    for pattern, finding in _ADAPTERS:
        if pattern.search(description):
            out.append(finding)
            break
    if data.get("wwan") is True or media == "Wireless WAN":
        out.append(Finding(OS, H, "Windows: a mobile broadband (WWAN) connection", Access.WWAN,
                           Upstream.CELLULAR))
    elif data.get("wlan") is True or media == "Native 802.11":
        out.append(Finding(OS, H, "Windows: a Wi-Fi connection", Access.WIFI))
    elif media == "BlueTooth":
        out.append(Finding(OS, M, "Windows: Bluetooth tethering to a phone",
                           upstream=Upstream.CELLULAR))
    elif media == "802.3" and not out:
        out.append(Finding(OS, M, "Windows: an Ethernet adapter", Access.ETHERNET))
    cost = str(data.get("cost") or "")
    if cost in ("Fixed", "Variable"):
        out.append(Finding(OS, L, f"Windows: the connection is metered (cost {cost})",
                           upstream=Upstream.CELLULAR))
    elif cost:
        out.append(Finding(OS, L, f"Windows: connection cost {cost}"))
    return out + subnet_findings([_ip(str(data.get("gateway") or ""))])


def parse_netsh_bssid(text: str) -> Finding | None:
    """`netsh wlan show interfaces`: an older Android hotspot's BSSID prefix."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().upper() == "BSSID" and value.strip().upper().startswith("02:1A:11"):
            return Finding(HS, L, "Wi-Fi BSSID prefix 02:1a:11 of older Android hotspots",
                           upstream=Upstream.CELLULAR)
    return None


def windows_findings(run: Runner) -> list[Finding]:
    answer = run(POWERSHELL, POWERSHELL_TIMEOUT)
    out = parse_windows(answer) if answer else []
    if any(f.access is Access.WIFI for f in out):
        wlan = run(["netsh", "wlan", "show", "interfaces"], TIMEOUT)
        found = parse_netsh_bssid(wlan) if wlan else None
        if found:
            out.append(found)
    return out or [Finding(LinkSource.NONE, L, "Windows: the system tools said nothing")]
