"""The measured network: the signed `network` object of every record of a pass,
and the watch that notices a change of route during the pass."""

from __future__ import annotations

from probe.core.record import Access, LinkType, NetworkInfo, Upstream
from probe.run.network import MeasuredNetwork, NetworkWatch, RouteState, link_facts, route_state


def test_a_user_link_type_is_said_to_come_from_the_user() -> None:
    cellular = link_facts("cellular")
    assert (cellular.link_type, cellular.upstream, cellular.upstream_source) == (
        LinkType.CELLULAR, Upstream.CELLULAR, "user")
    assert cellular.access is Access.UNKNOWN and cellular.access_source == "none"
    adsl = link_facts("adsl")
    assert adsl.upstream is Upstream.FIXED and adsl.link_type_source == "user"


def test_record_fields_validate_and_carry_no_changes_until_one_happens() -> None:
    network = MeasuredNetwork(link_facts("wifi"))
    fields = network.record_fields()
    assert "changes" not in fields
    assert fields["attribution"] == "none" and fields["cc"] is None and fields["asn"] is None
    info = NetworkInfo(**fields)
    dumped = info.model_dump(mode="json", exclude_unset=True)
    assert dumped["access"] == "wifi" and dumped["cc"] is None  # a null cc is kept


def test_the_watch_records_a_change_of_interface_or_address_without_the_address() -> None:
    states = iter([RouteState("wlan0", "192.168.1.20"), RouteState("wlan0", "192.168.1.20"),
                   RouteState("usb0", "192.168.42.7"), RouteState("usb0", "192.168.42.9")])
    network = MeasuredNetwork(link_facts("auto"))
    watch = NetworkWatch(network, read=lambda: next(states))
    assert watch.poll() is None
    roam = watch.poll()
    assert roam is not None and roam.detail == "interface wlan0 -> interface usb0"
    renumbered = watch.poll()
    assert renumbered is not None and "source address changed" in renumbered.detail
    changes = network.record_fields()["changes"]
    assert [c["kind"] for c in changes] == ["route", "route"]
    assert not any("192.168" in str(c) for c in changes)  # addresses are never recorded


def test_route_state_sends_nothing_and_answers_here() -> None:
    state = route_state()  # a UDP connect only asks the kernel for a route
    assert state == route_state()
