"""macOS and Windows: their own tools' outputs (tests/data/linktype/), parsed
without a Mac or a Windows machine; a missing tool gives `unknown`, not a guess."""

from __future__ import annotations

from pathlib import Path

import pytest

from probe.core.record import Access, Confidence, LinkSource, LinkType, Upstream
from probe.run import linktype_os
from probe.run.linktype import Host, detect_facts

DATA = Path(__file__).resolve().parents[2] / "data" / "linktype"


def text(name: str) -> str:
    return (DATA / name).read_text()


def runner(answers: dict[str, str | None]) -> linktype_os.Runner:
    """A command runner answering from captured outputs, by the command's first words."""
    def run(command: list[str], timeout: float) -> str | None:
        assert timeout <= linktype_os.POWERSHELL_TIMEOUT  # every call is bounded
        key = " ".join(command[:2]) if command[0] != "powershell" else "powershell"
        return answers.get(key)
    return run


def macos(getpacket: str, interface_line: str = "en7") -> Host:
    route = text("macos-route-get-default.txt").replace("en7", interface_line)
    return Host(bus=None, platform="darwin", run=runner({
        "route -n": route, "networksetup -listallhardwareports":
        text("macos-listallhardwareports.txt"), "ipconfig getpacket": text(getpacket)}))


def test_macos_iphone_usb_tethering() -> None:
    facts = detect_facts(macos("macos-getpacket-iphone.txt"))
    assert (facts.access, facts.upstream, facts.upstream_source, facts.upstream_confidence) == (
        Access.USB, Upstream.CELLULAR, LinkSource.OS, Confidence.HIGH)
    assert any("172.20.10.0/28" in e for e in facts.evidence)


def test_macos_wifi_on_an_android_hotspot() -> None:
    facts = detect_facts(macos("macos-getpacket-android.txt", "en0"))
    assert (facts.link_type, facts.access, facts.upstream, facts.upstream_source) == (
        LinkType.CELLULAR, Access.WIFI, Upstream.CELLULAR, LinkSource.HOTSPOT)
    assert any("ANDROID_METERED (macOS ipconfig)" in e for e in facts.evidence)


def test_macos_getpacket_parser_reads_the_option_bytes_and_addresses() -> None:
    vendor, addresses = linktype_os.parse_getpacket(text("macos-getpacket-android.txt"))
    assert vendor == b"ANDROID_METERED"
    assert [str(a) for a in addresses] == ["10.143.88.20", "10.143.88.61"]


@pytest.mark.parametrize(("port", "access", "upstream"), [
    ("Wi-Fi", Access.WIFI, None), ("iPhone USB", Access.USB, Upstream.CELLULAR),
    ("Bluetooth PAN", None, Upstream.CELLULAR), ("USB 10/100/1000 LAN", Access.ETHERNET, None),
    ("Thunderbolt Bridge", None, None), ("Something New", None, None),
])
def test_macos_hardware_ports(port: str, access: Access | None, upstream: Upstream | None) -> None:
    found = linktype_os.port_finding(port)
    assert found is not None and (found.access, found.upstream) == (access, upstream)
    assert "Something New" not in found.evidence  # an unknown port's name is not recorded


@pytest.mark.parametrize(("answer", "access", "upstream", "confidence"), [
    ("windows-rndis.json", Access.USB, Upstream.CELLULAR, Confidence.MEDIUM),
    ("windows-iphone.json", Access.USB, Upstream.CELLULAR, Confidence.HIGH),
    ("windows-wwan.json", Access.WWAN, Upstream.CELLULAR, Confidence.HIGH),
    ("windows-wifi-metered.json", Access.WIFI, Upstream.CELLULAR, Confidence.LOW),
    ("windows-ethernet.json", Access.ETHERNET, Upstream.UNKNOWN, None),
])
def test_windows_adapters(answer: str, access: Access, upstream: Upstream,
                          confidence: Confidence | None) -> None:
    host = Host(bus=None, platform="win32", run=runner({"powershell": text(answer)}))
    facts = detect_facts(host)
    assert (facts.access, facts.upstream, facts.upstream_confidence) == (
        access, upstream, confidence)


def test_windows_wifi_bssid_of_an_android_hotspot_from_netsh() -> None:
    host = Host(bus=None, platform="win32", run=runner({
        "powershell": text("windows-ethernet.json").replace('"802.3"', '"Native 802.11"'),
        "netsh wlan": text("windows-netsh-wlan.txt")}))
    facts = detect_facts(host)
    assert (facts.access, facts.upstream, facts.upstream_source) == (
        Access.WIFI, Upstream.CELLULAR, LinkSource.HOTSPOT)
    assert not any("AndroidAP" in e for e in facts.evidence)  # never a network's name


def test_missing_tools_or_unreadable_answers_are_unknown() -> None:
    for host in (Host(bus=None, platform="darwin", run=runner({})),
                 Host(bus=None, platform="win32", run=runner({"powershell": "not json"})),
                 Host(bus=None, platform="freebsd14")):
        facts = detect_facts(host)
        assert (facts.link_type, facts.access, facts.upstream) == (
            LinkType.UNKNOWN, Access.UNKNOWN, Upstream.UNKNOWN)
        assert facts.evidence  # says why


def test_the_real_runner_bounds_a_command_and_survives_a_missing_one() -> None:
    from probe.run.linktype import run_command

    assert run_command(["sleep", "5"], 0.2) is None
    assert run_command(["no-such-tool-here"], 1.0) is None
    assert run_command(["echo", "ok"], 2.0) == "ok\n"
