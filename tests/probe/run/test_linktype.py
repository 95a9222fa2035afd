"""Deciding the two facts from findings: the surest first, then the better source;
the user's word for what it states; the one-word summary consistent with them."""

from __future__ import annotations

from pathlib import Path

import pytest

from probe.core.record import Access, Confidence, LinkSource, LinkType, NetworkInfo, Upstream
from probe.run.linktype import (
    Finding,
    Host,
    decide,
    describe,
    detect_facts,
    from_user,
    guarded,
    with_hint,
)
from probe.run.linktype_asn import AsnKind, hint, load_table, parse_table
from tests.support.fakeroot import FakeRoot

H, M, L = Confidence.HIGH, Confidence.MEDIUM, Confidence.LOW
WIFI = Finding(LinkSource.DRIVER, H, "Wi-Fi interface", Access.WIFI)
METERED = Finding(LinkSource.NETWORKMANAGER, M, "metered guess-yes", upstream=Upstream.CELLULAR)
SUBNET = Finding(LinkSource.HOTSPOT, L, "iPhone subnet", upstream=Upstream.CELLULAR)
PPPOE = Finding(LinkSource.DRIVER, M, "PPPoE", Access.ETHERNET, Upstream.FIXED)
ASN_FIXED = Finding(LinkSource.ASN, L, "AS64500 fixed only", upstream=Upstream.FIXED)


@pytest.mark.parametrize(("findings", "expected"), [
    ([], (LinkType.UNKNOWN, LinkSource.NONE, Access.UNKNOWN, Upstream.UNKNOWN, None)),
    ([WIFI], (LinkType.WIFI, LinkSource.DRIVER, Access.WIFI, Upstream.UNKNOWN, None)),
    ([SUBNET, WIFI, METERED],
     (LinkType.CELLULAR, LinkSource.NETWORKMANAGER, Access.WIFI, Upstream.CELLULAR, M)),
    ([WIFI, ASN_FIXED], (LinkType.WIFI, LinkSource.DRIVER, Access.WIFI, Upstream.FIXED, L)),
    ([PPPOE], (LinkType.ADSL, LinkSource.DRIVER, Access.ETHERNET, Upstream.FIXED, M)),
    # equally sure: the better source wins (hotspot before ASN), whatever the order given
    ([ASN_FIXED, SUBNET], (LinkType.CELLULAR, LinkSource.HOTSPOT, Access.UNKNOWN,
                           Upstream.CELLULAR, L)),
])
def test_decide(findings: list[Finding], expected: tuple[object, ...]) -> None:
    facts = decide(findings)
    assert (facts.link_type, facts.link_type_source, facts.access, facts.upstream,
            facts.upstream_confidence) == expected
    NetworkInfo(**facts.record_fields())  # what the record carries validates


def test_the_evidence_lists_what_was_seen_best_first_without_repeats() -> None:
    facts = decide([SUBNET, WIFI, METERED, SUBNET])
    assert facts.evidence == ("Wi-Fi interface", "metered guess-yes", "iPhone subnet")


def test_the_user_wins_for_what_it_states_and_detection_fills_the_rest() -> None:
    detected = decide([WIFI, METERED])
    adsl = from_user(LinkType.ADSL, detected)  # says fixed: the hotspot hint loses
    assert (adsl.link_type, adsl.link_type_source, adsl.upstream, adsl.upstream_source) == (
        LinkType.ADSL, LinkSource.USER, Upstream.FIXED, LinkSource.USER)
    assert (adsl.access, adsl.access_source) == (Access.WIFI, LinkSource.DRIVER)
    wifi = from_user(LinkType.WIFI, detected)  # says nothing of the upstream
    assert (wifi.link_type, wifi.upstream, wifi.upstream_source) == (
        LinkType.WIFI, Upstream.CELLULAR, LinkSource.NETWORKMANAGER)
    assert wifi.evidence[0] == "--link-type wifi"
    alone = from_user(LinkType.CELLULAR)
    assert (alone.access, alone.access_source, alone.upstream_confidence) == (
        Access.UNKNOWN, LinkSource.NONE, H)


def test_a_late_hint_counts_only_where_nothing_better_is_known() -> None:
    table = {64500: AsnKind(64500, "Example Mobile", Upstream.CELLULAR),
             64501: AsnKind(64501, "Example Telecom", None)}
    wifi = decide([WIFI])
    hinted = with_hint(wifi, hint(64500, table))
    assert (hinted.upstream, hinted.upstream_source, hinted.upstream_confidence,
            hinted.link_type) == (Upstream.CELLULAR, LinkSource.ASN, L, LinkType.CELLULAR)
    assert with_hint(decide([PPPOE]), hint(64500, table)).upstream is Upstream.FIXED
    mixed = with_hint(wifi, hint(64501, table))
    assert mixed.upstream is Upstream.UNKNOWN and "no hint" in mixed.evidence[-1]
    assert hint(64502, table) is None and hint(None, table) is None
    user = with_hint(from_user(LinkType.ETHERNET), hint(64500, table))
    assert (user.link_type, user.upstream) == (LinkType.ETHERNET, Upstream.CELLULAR)


def test_the_shipped_asn_table_loads_and_names_its_sources() -> None:
    table = load_table()
    assert {6713, 36925, 36884} <= set(table)
    with pytest.raises(ValueError, match=r"asns\[0\]: needs an integer `asn`"):
        parse_table({"version": 1, "asns": [{"asn": "6713", "kind": "mixed"}]}, "t.yaml")
    with pytest.raises(ValueError, match=r"t\.yaml: expected `version: 1`"):
        parse_table([], "t.yaml")


def test_a_failing_source_costs_its_evidence_not_the_pass(tmp_path: Path) -> None:
    def broken() -> list[Finding]:
        raise KeyError("a parser bug")

    (found,) = guarded(broken, "sysfs")
    assert (found.access, found.upstream, found.evidence) == (
        None, None, "sysfs detection failed (KeyError)")
    root = FakeRoot(tmp_path)
    root.interface("wlan0", driver="iwlwifi", devtype="wlan", wireless=True).route("wlan0")
    (tmp_path / "var/lib/dhcp/dhclient.leases").mkdir(parents=True)  # a directory, not a file
    facts = detect_facts(Host(root=tmp_path, bus=None, platform="linux"))
    assert facts.access is Access.WIFI and "access wifi from driver" in describe(facts)
