"""Linux: every evidence source on the default route's interface, best first
(D-Bus, sysfs, DHCP leases and hotspot subnets)."""

from __future__ import annotations

from probe.core.record import Confidence, LinkSource
from probe.run import linktype_dbus, linktype_dhcp, linktype_sysfs
from probe.run.linktype import Finding, Host, guarded


def findings(host: Host) -> list[Finding]:
    route = linktype_sysfs.default_route(host.root)
    if route is None:
        return [Finding(LinkSource.NONE, Confidence.LOW, "no IPv4 default route")]
    interface = route.interface
    gateway = route.gateway if int(route.gateway) else None
    return (guarded(lambda: linktype_dbus.findings(interface, host.bus), "D-Bus")
            + guarded(lambda: linktype_sysfs.findings(interface, host.root), "sysfs")
            + guarded(lambda: linktype_dhcp.findings(interface, host.root, gateway), "DHCP"))
