"""The measured network: the signed `network` object of every record of a pass,
and the watch that notices a change of route during the pass, then of the link."""

from __future__ import annotations

from pathlib import Path

from probe.core.record import Access, LinkSource, LinkType, NetworkInfo, Upstream
from probe.run.linktype import Host, LinkFacts
from probe.run.network import (
    AttributionFacts,
    MeasuredNetwork,
    NetworkWatch,
    RouteState,
    link_facts,
    route_state,
)
from tests.support.fakeroot import FakeRoot


def wifi_host(tmp_path: Path) -> Host:
    FakeRoot(tmp_path).interface("wlan0", driver="iwlwifi", devtype="wlan",
                                 wireless=True).route("wlan0", "192.168.1.1")
    return Host(root=tmp_path, bus=None, platform="linux")


def test_a_user_link_type_is_said_to_come_from_the_user(tmp_path: Path) -> None:
    host = wifi_host(tmp_path)
    cellular = link_facts("cellular", host)
    assert (cellular.link_type, cellular.upstream, cellular.upstream_source) == (
        LinkType.CELLULAR, Upstream.CELLULAR, LinkSource.USER)
    assert (cellular.access, cellular.access_source) == (Access.WIFI, LinkSource.DRIVER)
    adsl = link_facts("adsl", host)
    assert adsl.upstream is Upstream.FIXED and adsl.link_type_source is LinkSource.USER
    auto = link_facts("auto", host)
    assert (auto.link_type, auto.link_type_source) == (LinkType.WIFI, LinkSource.DRIVER)


def test_record_fields_validate_and_carry_no_changes_until_one_happens(tmp_path: Path) -> None:
    network = MeasuredNetwork(link_facts("wifi", wifi_host(tmp_path)))
    fields = network.record_fields()
    assert "changes" not in fields
    assert fields["attribution"] == "none" and fields["cc"] is None and fields["asn"] is None
    info = NetworkInfo(**fields)
    dumped = info.model_dump(mode="json", exclude_unset=True)
    assert dumped["access"] == "wifi" and dumped["cc"] is None  # a null cc is kept
    assert dumped["upstream_confidence"] is None and dumped["link_evidence"][0] == \
        "--link-type wifi"


def test_the_asn_is_a_hint_once_attribution_has_learnt_it(tmp_path: Path) -> None:
    network = MeasuredNetwork(link_facts("auto", wifi_host(tmp_path)))
    network.attribution = AttributionFacts(cc="MA", asn=6713)
    fields = network.record_fields()
    assert fields["upstream"] is Upstream.UNKNOWN  # the table says Maroc Telecom is mixed
    assert any(e.startswith("AS6713 (Maroc Telecom (IAM)) carries mobile and fixed")
               for e in fields["link_evidence"])


def test_the_watch_records_a_change_of_interface_or_address_without_the_address() -> None:
    states = iter([RouteState("wlan0", "192.168.1.20"), RouteState("wlan0", "192.168.1.20"),
                   RouteState("usb0", "192.168.42.7"), RouteState("usb0", "192.168.42.9")])
    network = MeasuredNetwork(link_facts("auto", Host(bus=None, platform="none")))
    watch = NetworkWatch(network, read=lambda: next(states))
    assert watch.poll() is None
    roam = watch.poll()
    assert roam is not None and roam.detail == "interface wlan0 -> interface usb0"
    renumbered = watch.poll()
    assert renumbered is not None and "source address changed" in renumbered.detail
    changes = network.record_fields()["changes"]
    assert [c["kind"] for c in changes] == ["route", "route"]
    assert not any("192.168" in str(c) for c in changes)  # addresses are never recorded


async def test_a_roam_from_wifi_to_a_usb_tether_is_detected_and_recorded(
        tmp_path: Path) -> None:
    """A laptop on home Wi-Fi plugs in its phone: the route moves to usb0, the link
    is detected again and the next records carry the new facts and the changes."""
    root = FakeRoot(tmp_path)
    root.interface("wlan0", driver="iwlwifi", devtype="wlan", wireless=True)
    root.interface("usb0", driver="rndis_host", bus="usb", vendor="04e8")
    root.route("wlan0", "192.168.1.1", metric=600)
    host = Host(root=tmp_path, bus=None, platform="linux")
    network = MeasuredNetwork(link_facts("auto", host))
    detections: list[LinkFacts] = []

    def detect() -> LinkFacts:
        detections.append(link_facts("auto", host))
        return detections[-1]

    route = iter([RouteState("wlan0", "a"), RouteState("wlan0", "a"), RouteState("usb0", "b"),
                  RouteState("usb0", "b")])
    watch = NetworkWatch(network, read=lambda: next(route), detect=detect)
    assert await watch.check() == [] and detections == []  # no change: nothing re-detected
    root.route("usb0", "192.168.42.129", metric=100)
    kinds = [c.kind for c in await watch.check()]
    assert kinds == ["route", "access", "upstream"]
    fields = network.record_fields()
    assert (fields["link_type"], fields["access"], fields["upstream"]) == (
        LinkType.CELLULAR, Access.USB, Upstream.CELLULAR)
    assert [c["detail"] for c in fields["changes"][1:]] == [
        "wifi (driver) -> usb (driver)", "unknown (none) -> cellular (driver)"]
    assert await watch.check() == [] and len(detections) == 1
    NetworkInfo(**fields)


def test_route_state_sends_nothing_and_answers_here() -> None:
    state = route_state()  # a UDP connect only asks the kernel for a route
    assert state == route_state()
