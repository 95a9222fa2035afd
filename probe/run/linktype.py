"""Guess the link type of the default route's interface from /sys/class/net.

Wi-Fi interfaces have a `wireless` or `phy80211` entry; cellular modems show
DEVTYPE=wwan (or a wwan/rmnet/ccmni name); an ADSL line cannot be told from
Ethernet behind a home router, so the user says `--link-type adsl`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from probe.core.record import Access, LinkType, Upstream

SYS_NET = Path("/sys/class/net")
CELLULAR_PREFIXES = ("wwan", "rmnet", "ccmni", "usb", "ppp")
ARPHRD_ETHER = "1"
ARPHRD_NONE = "65534"


def default_interface(route_table: Path = Path("/proc/net/route")) -> str | None:
    try:
        lines = route_table.read_text().splitlines()[1:]
    except OSError:
        return None
    best: tuple[int, str] | None = None
    for line in lines:
        fields = line.split()
        if len(fields) > 7 and fields[1] == "00000000" and fields[7] == "00000000":
            metric = int(fields[6]) if fields[6].isdigit() else 0
            if best is None or metric < best[0]:
                best = (metric, fields[0])
    return best[1] if best else None


def classify_interface(name: str, sys_net: Path = SYS_NET) -> LinkType:
    device = sys_net / name
    if (device / "wireless").exists() or (device / "phy80211").exists():
        return LinkType.WIFI
    try:
        uevent = (device / "uevent").read_text()
    except OSError:
        uevent = ""
    if "DEVTYPE=wwan" in uevent or name.startswith(CELLULAR_PREFIXES):
        return LinkType.CELLULAR
    if "DEVTYPE=wlan" in uevent:
        return LinkType.WIFI
    try:
        arp_type = (device / "type").read_text().strip()
    except OSError:
        return LinkType.UNKNOWN
    if arp_type == ARPHRD_NONE:
        return LinkType.CELLULAR  # raw-IP modems (qmi_wwan) have no link layer
    if arp_type == ARPHRD_ETHER and "DEVTYPE=" not in uevent:
        return LinkType.ETHERNET
    return LinkType.UNKNOWN


def detect() -> LinkType:
    name = default_interface()
    return classify_interface(name) if name else LinkType.UNKNOWN


@dataclass(frozen=True)
class LinkFacts:
    """Two facts, each with how it was decided, and the one-word summary."""

    link_type: LinkType  # what every record has said since schema v1
    link_type_source: str
    access: Access
    access_source: str
    upstream: Upstream
    upstream_source: str


# what a user's --link-type says about each fact
_USER = {
    LinkType.CELLULAR: (Access.UNKNOWN, Upstream.CELLULAR),
    LinkType.ADSL: (Access.UNKNOWN, Upstream.FIXED),
    LinkType.WIFI: (Access.WIFI, Upstream.UNKNOWN),  # a home router, or a phone's hotspot
    LinkType.ETHERNET: (Access.ETHERNET, Upstream.UNKNOWN),
    LinkType.UNKNOWN: (Access.UNKNOWN, Upstream.UNKNOWN),
}


def from_user(link_type: LinkType) -> LinkFacts:
    access, upstream = _USER[link_type]
    return LinkFacts(link_type, "user", access, "user" if access is not Access.UNKNOWN
                     else "none", upstream, "user" if upstream is not Upstream.UNKNOWN
                     else "none")


def detect_facts() -> LinkFacts:
    """The link as sysfs shows the default route's interface."""
    link_type = detect()
    access = {LinkType.WIFI: Access.WIFI, LinkType.CELLULAR: Access.WWAN,
              LinkType.ETHERNET: Access.ETHERNET}.get(link_type, Access.UNKNOWN)
    upstream = Upstream.CELLULAR if link_type is LinkType.CELLULAR else Upstream.UNKNOWN
    source = "driver" if access is not Access.UNKNOWN else "none"
    return LinkFacts(link_type, "auto", access, source, upstream,
                     "driver" if upstream is not Upstream.UNKNOWN else "none")
