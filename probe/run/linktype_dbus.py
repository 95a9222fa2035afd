"""ModemManager and NetworkManager over D-Bus (the system bus), when present:
the best evidence a Linux machine has of a cellular link.

- ModemManager (`org.freedesktop.ModemManager1`): a modem whose network port
  or connected bearer is the default route's interface is certain evidence
  (`modem`, high); its access technologies say which generation.
- NetworkManager (`org.freedesktop.NetworkManager`): the device behind the
  default route (`DeviceType`: wifi, modem, bluetooth, adsl), its active
  connection's `Type` (gsm, cdma, pppoe...), its `Metered` state (NMMetered:
  NetworkManager guesses `yes` for modems and for what Android hotspots and
  metered Wi-Fi networks announce), the DHCP options it received (option 43
  `ANDROID_METERED`) and, on Wi-Fi, the access point's BSSID (older Android
  hotspots use the prefix 02:1a:11).

jeepney (pure Python) is imported here only, when a pass detects its link.
Every call has a short timeout and the whole look-up a deadline: a bus that
does not answer costs at most `DEADLINE` seconds and yields no finding.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from probe.core.record import Access, Confidence, LinkSource, Upstream
from probe.run.linktype import Finding

NM = "org.freedesktop.NetworkManager"
NM_PATH = "/org/freedesktop/NetworkManager"
NM_DEVICE = f"{NM}.Device"
MM = "org.freedesktop.ModemManager1"
MM_PATH = "/org/freedesktop/ModemManager1"
PROPERTIES = "org.freedesktop.DBus.Properties"
OBJECT_MANAGER = "org.freedesktop.DBus.ObjectManager"

CALL_TIMEOUT = 0.5
DEADLINE = 2.0

# NMDeviceType
NM_ETHERNET, NM_WIFI, NM_BT, NM_MODEM, NM_ADSL = 1, 2, 5, 8, 12
# NMMetered
METERED = {0: "unknown", 1: "yes", 2: "no", 3: "guess-yes", 4: "guess-no"}
# MMModemPortType, MMModemState
MM_PORT_NET, MM_STATE_CONNECTED = 2, 11
# MMModemAccessTechnology bits, by generation
GENERATIONS = (("5G", 1 << 15), ("4G", (1 << 14) | (1 << 16) | (1 << 17)),
               ("3G", sum(1 << b for b in (5, 6, 7, 8, 9, 11, 12, 13))),
               ("2G", sum(1 << b for b in (1, 2, 3, 4, 10))))
ANDROID_BSSID_PREFIX = "02:1A:11"

N, MO, HS = LinkSource.NETWORKMANAGER, LinkSource.MODEM, LinkSource.HOTSPOT
H, M, L = Confidence.HIGH, Confidence.MEDIUM, Confidence.LOW


class Bus:
    """A few synchronous calls on one connection; None for any error or timeout."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def call(self, name: str, path: str, interface: str, method: str, signature: str | None = None,
             body: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        from jeepney import DBusAddress, MessageType, new_method_call

        message = new_method_call(DBusAddress(path, bus_name=name, interface=interface), method,
                                  signature, body)
        try:
            reply = self.connection.send_and_get_reply(message, timeout=CALL_TIMEOUT)
        except (OSError, TimeoutError, ValueError):
            return None
        if reply.header.message_type != MessageType.method_return:
            return None
        return tuple(reply.body)

    def get(self, name: str, path: str, interface: str, prop: str) -> Any:
        body = self.call(name, path, PROPERTIES, "Get", "ss", (interface, prop))
        return body[0][1] if body else None

    def get_all(self, name: str, path: str, interface: str) -> dict[str, Any]:
        body = self.call(name, path, PROPERTIES, "GetAll", "s", (interface,))
        return {k: v[1] for k, v in body[0].items()} if body else {}


def generation(access_technologies: int) -> str:
    return next((name for name, bits in GENERATIONS if access_technologies & bits), "unknown")


def modem_findings(bus: Bus, interface: str | None) -> list[Finding]:
    body = bus.call(MM, MM_PATH, OBJECT_MANAGER, "GetManagedObjects")
    if not body or interface is None:
        return []
    out: list[Finding] = []
    for _path, interfaces in sorted(body[0].items()):
        modem = {k: v[1] for k, v in interfaces.get(f"{MM}.Modem", {}).items()}
        if not modem:
            continue
        ports = {port for port, kind in modem.get("Ports", []) if kind == MM_PORT_NET}
        carrying = interface in ports
        for bearer in modem.get("Bearers", []):
            props = bus.get_all(MM, bearer, f"{MM}.Bearer")
            if props.get("Interface") == interface and props.get("Connected", True):
                carrying = True
        if carrying:
            tech = generation(int(modem.get("AccessTechnologies", 0)))
            state = "connected" if modem.get("State") == MM_STATE_CONNECTED else "not connected"
            out.append(Finding(MO, H, f"ModemManager: the route goes over a modem ({state}, "
                               f"access technology {tech})", Access.WWAN, Upstream.CELLULAR))
        elif modem.get("State") == MM_STATE_CONNECTED:
            out.append(Finding(MO, L, "ModemManager: a connected modem does not carry the "
                               "default route"))
    return out


def _device(bus: Bus, interface: str | None) -> tuple[str, dict[str, Any]] | None:
    """The NetworkManager device of the default route's interface (else of the
    primary connection)."""
    body = bus.call(NM, NM_PATH, NM, "GetDevices")
    candidates = list(body[0]) if body else []
    if interface is None:
        primary = bus.get(NM, NM_PATH, NM, "PrimaryConnection")
        devices = bus.get(NM, primary, f"{NM}.Connection.Active", "Devices") if primary and \
            primary != "/" else None
        candidates = list(devices or [])[:1]
    for path in candidates:
        props = bus.get_all(NM, path, NM_DEVICE)
        if interface is None or interface in (props.get("IpInterface"), props.get("Interface")):
            return path, props
    return None


def network_manager_findings(bus: Bus, interface: str | None) -> list[Finding]:
    found = _device(bus, interface)
    if found is None:
        return []
    path, device = found
    out: list[Finding] = []
    kind = int(device.get("DeviceType", 0))
    if kind == NM_WIFI:
        out.append(Finding(N, H, "NetworkManager: a Wi-Fi device", Access.WIFI))
    elif kind == NM_MODEM:
        out.append(Finding(N, H, "NetworkManager: a modem device", Access.WWAN,
                           Upstream.CELLULAR))
    elif kind == NM_BT:
        out.append(Finding(N, M, "NetworkManager: Bluetooth tethering to a phone",
                           upstream=Upstream.CELLULAR))
    elif kind == NM_ADSL:
        out.append(Finding(N, H, "NetworkManager: an ADSL device", upstream=Upstream.FIXED))
    elif kind == NM_ETHERNET:  # USB tethers are Ethernet to NetworkManager: sysfs tells better
        out.append(Finding(N, L, "NetworkManager: an Ethernet device", Access.ETHERNET))
    active = device.get("ActiveConnection")
    kind_of_connection = bus.get(NM, active, f"{NM}.Connection.Active", "Type") \
        if active and active != "/" else None
    if kind_of_connection in ("gsm", "cdma"):
        out.append(Finding(N, H, f"NetworkManager: a {kind_of_connection} connection",
                           Access.WWAN, Upstream.CELLULAR))
    elif kind_of_connection in ("pppoe", "adsl"):
        out.append(Finding(N, M, f"NetworkManager: a {kind_of_connection} connection",
                           upstream=Upstream.FIXED))
    elif kind_of_connection in ("vpn", "wireguard"):
        out.append(Finding(N, L, f"NetworkManager: a {kind_of_connection} connection: the "
                           "link under it is not seen"))
    metered = METERED.get(int(device.get("Metered", 0)), "unknown")
    if metered == "guess-yes" and kind not in (NM_MODEM, NM_BT):
        out.append(Finding(N, M, "NetworkManager: metered guess-yes (a phone's hotspot: DHCP "
                           "ANDROID_METERED or the Wi-Fi network's cost element)",
                           upstream=Upstream.CELLULAR))
    elif metered == "yes":
        out.append(Finding(N, L, "NetworkManager: metered yes (set on the connection)",
                           upstream=Upstream.CELLULAR))
    elif metered != "unknown":
        out.append(Finding(N, L, f"NetworkManager: metered {metered}"))
    dhcp4 = device.get("Dhcp4Config")
    options = bus.get(NM, dhcp4, f"{NM}.DHCP4Config", "Options") if dhcp4 and dhcp4 != "/" \
        else None
    vendor = (options or {}).get("vendor_encapsulated_options")
    if vendor and "ANDROID_METERED" in str(vendor[1]):
        out.append(Finding(HS, M, "DHCP option 43 ANDROID_METERED (NetworkManager): an "
                           "Android phone's hotspot or tethering", upstream=Upstream.CELLULAR))
    if kind == NM_WIFI:
        ap = bus.get(NM, path, f"{NM_DEVICE}.Wireless", "ActiveAccessPoint")
        bssid = bus.get(NM, ap, f"{NM}.AccessPoint", "HwAddress") if ap and ap != "/" else None
        if isinstance(bssid, str) and bssid.upper().startswith(ANDROID_BSSID_PREFIX):
            out.append(Finding(HS, L, "Wi-Fi BSSID prefix 02:1a:11 of older Android hotspots",
                               upstream=Upstream.CELLULAR))
    return out


def _look(address: str, interface: str | None) -> list[Finding]:
    from jeepney.io.blocking import open_dbus_connection

    connection = open_dbus_connection(bus=address, auth_timeout=CALL_TIMEOUT)  # says Hello
    try:
        bus = Bus(connection)
        return modem_findings(bus, interface) + network_manager_findings(bus, interface)
    finally:
        connection.close()


def findings(interface: str | None, address: str | None = "SYSTEM",
             deadline: float = DEADLINE,
             look: Callable[[str, str | None], list[Finding]] = _look) -> list[Finding]:
    """What ModemManager and NetworkManager say of `interface`; [] without a bus."""
    if address is None:
        return []
    try:
        import jeepney  # noqa: F401
    except ImportError:
        return []
    result: list[tuple[list[Finding], float]] = []  # what it said, and when

    def worker() -> None:
        try:
            found = look(address, interface)
        except Exception:  # no bus, a refused connection, a malformed answer: no evidence
            found = []
        result.append((found, time.monotonic()))

    start = time.monotonic()
    thread = threading.Thread(target=worker, name="linktype-dbus", daemon=True)
    thread.start()
    thread.join(deadline)
    # an answer that came after the deadline, while this thread waited for a core, is late too
    if not result or result[0][1] - start > deadline:
        return [Finding(LinkSource.NONE, L, f"D-Bus did not answer within {deadline:g} s")]
    return result[0][0]
