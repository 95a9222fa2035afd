"""The policy compiler: each primitive becomes the nftables/tc rule it promises.
(That the rules do what they say to real traffic is what the accuracy tests
show; these pin the matches that are easy to get subtly wrong.)"""

from __future__ import annotations

import pytest

from deploy.lab.censor import Compiled, Compiler, ice_host
from deploy.lab.lab import LAB_CATALOGUE
from deploy.lab.scenario import parse_scenario
from deploy.lab.shell import LabError
from deploy.lab.topology import Topology
from probe.catalogue import load_catalogue, parse_catalogue

EVERY_PRIMITIVE = """
description: every primitive
policy:
  cellular:
    - {action: drop, payload: stun}
    - {action: drop, payload: dtls}
    - {action: reset, role: messaging, ports: [443, 5222]}
    - {action: icmp, type: port-unreachable, role: call, proto: udp}
    - {action: loss, percent: 5}
    - {action: rate, kbit: 1000, proto: udp, ports: ["3478-3481"]}
    - {action: dns, names: ["*.parla.lab"], answer: nxdomain}
    - {action: drop, proto: udp, ports: ["1-52", "54-65535"], payload: rtp}
  adsl:
    - {action: dns, names: [chat.lumen.lab], answer: [10.10.34.34]}
down: [relay.lumen.lab]
"""


def compiled() -> Compiled:
    scenario = parse_scenario(EVERY_PRIMITIVE, "every.yaml")
    return Compiler(load_catalogue(LAB_CATALOGUE)).compile(scenario, Topology("vwlabx"))


def test_rules_sit_on_the_forward_hook_per_link_type() -> None:
    nft = compiled().router_nft
    assert "type filter hook forward priority filter; policy accept;" in nft
    assert 'iifname "cellular" jump up_cellular' in nft
    assert 'oifname "cellular" jump down_cellular' in nft
    assert "hook output" not in nft  # a drop there would make sendto() fail with EPERM


def test_payload_matches() -> None:
    nft = compiled().router_nft
    # the STUN magic cookie: 8 bytes of UDP header + 4 bytes into the STUN header
    assert "meta l4proto udp @th,96,32 0x2112a442 drop" in nft
    # a DTLS handshake record: content type 22, version byte 0xfe
    assert "meta l4proto udp @th,64,8 0x16 @th,72,8 0xfe drop" in nft
    # RTP/RTCP by RFC 7983's first byte (128-191), every UDP port but DNS's
    assert "udp dport { 1-52, 54-65535 } @th,64,8 & 0xc0 == 0x80 drop" in nft


def test_reset_icmp_loss_and_rate() -> None:
    result = compiled()
    nft = result.router_nft
    assert ("ip daddr { 192.88.99.10, 192.88.99.20 } tcp dport { 443, 5222 } "
            "reject with tcp reset") in nft
    assert ("ip daddr { 192.88.99.11, 192.88.99.21, 192.88.99.22 } meta l4proto udp "
            "reject with icmp type port-unreachable") in nft
    up, down = nft.split("chain up_cellular")[1], nft.split("chain down_cellular")[1]
    assert "numgen random mod 100 < 5 drop" in up.split("\n  }")[0]
    assert "numgen random mod 100 < 5 drop" in down.split("\n  }")[0]  # both directions
    assert "udp dport 3478-3481 meta mark set 0x106" in nft
    assert "udp sport 3478-3481 meta mark set 0x106" in nft
    tc = [" ".join(c) for c in result.tc]
    # shaped where each direction leaves the router: toward the probe, toward the internet
    for device in ("cellular", "inet"):
        assert f"tc class add dev {device} parent 1: classid 1:106 htb rate 1000kbit" \
               " ceil 1000kbit burst 15000b cburst 15000b" in tc
    # the class is chosen by skb->priority; no tc filter (a u32 `match mark` this
    # kernel lacks would be ignored and send every packet to the class)
    assert "udp dport 3478-3481 meta mark set 0x106 meta priority set 1:106" in nft
    assert not any(" filter " in command for command in tc)


def test_dns_tampering_redirects_port_53_and_gives_the_liar_views() -> None:
    result = compiled()
    assert ('iifname "cellular" meta l4proto { tcp, udp } th dport 53 dnat ip to 192.88.99.54'
            in result.router_nft)
    assert 'iifname "adsl" meta l4proto { tcp, udp } th dport 53' in result.router_nft
    assert result.dns_views == {"10.200.1.0/24": {"*.parla.lab": "nxdomain"},
                                "10.200.2.0/24": {"chat.lumen.lab": ["10.10.34.34"]}}


def test_down_hosts_are_silent_in_the_internet() -> None:
    inet = compiled().inet_nft
    assert "type filter hook input priority filter; policy accept;" in inet
    assert "ip daddr 192.88.99.11 drop" in inet


def test_an_empty_policy_replaces_the_previous_one() -> None:
    scenario = parse_scenario("description: open\n", "open.yaml")
    result = Compiler(load_catalogue(LAB_CATALOGUE)).compile(scenario, Topology("vwlabx"))
    # create, delete, recreate: one atomic nft transaction whatever was there before
    assert result.router_nft.startswith(
        "table inet voipwatch_lab { }\ndelete table inet voipwatch_lab\n")
    assert "jump" not in result.router_nft and result.tc == []


WEBRTC_ONLY = """
version: 1
services:
  - id: calls
    name: Calls
    endpoints:
      - {check: webrtc, url: "http://collector.lab/api/v1/webrtc/offer", policy: relay,
         role: call, ice_servers: [{urls: ["turns:echo.lab:443?transport=tcp",
                                           "stun:192.88.99.22:3478"]}]}
      - {check: throttle, url: "http://collector.lab", port: 3480, profile: whatsapp,
         role: call}
      - {check: tcp, host: chat.lumen.lab, port: 5222, role: messaging}
"""


def test_a_webrtc_calls_servers_are_its_ice_servers_never_the_collector() -> None:
    """`role: call` names the hosts the service's calls need: for a webrtc endpoint
    its ICE servers; the collector (the reference peer, the reflector, and the
    probe's control and uploads) only when a rule names it."""
    compiler = Compiler(parse_catalogue(WEBRTC_ONLY, "calls.yaml"))
    scenario = parse_scenario("description: x\npolicy:\n  cellular:\n"
                              "    - {action: drop, role: call}\n", "x.yaml")
    nft = compiler.compile(scenario, Topology("vwlabx")).router_nft
    assert "ip daddr { 192.88.99.22, 192.88.99.7 } drop" in nft
    assert "192.88.99.80" not in nft and "192.88.99.10" not in nft


@pytest.mark.parametrize("url, host", [
    ("stun:relay.lumen.lab:3478", "relay.lumen.lab"),
    ("stun:relay.lumen.lab", "relay.lumen.lab"),
    ("turn:10.0.0.1:3478?transport=udp", "10.0.0.1"),
    ("turns:[2001:db8::1]:443?transport=tcp", "2001:db8::1"),
])
def test_ice_server_host(url: str, host: str) -> None:
    assert ice_host(url) == host


def test_a_drop_after_n_packets_cuts_the_flow_both_ways() -> None:
    scenario = parse_scenario(
        "description: x\npolicy:\n  cellular:\n"
        "    - {action: drop, proto: udp, ports: ['1-52', '54-65535'], after: 60}\n", "x.yaml")
    nft = Compiler(load_catalogue(LAB_CATALOGUE)).compile(scenario, Topology("vwlabx")).router_nft
    assert "udp dport { 1-52, 54-65535 } ct original packets > 60 drop" in nft
    assert "udp sport { 1-52, 54-65535 } ct original packets > 60 drop" in nft


def test_a_client_hello_is_matched_in_tcp_segments() -> None:
    scenario = parse_scenario(
        "description: x\npolicy:\n  cellular:\n"
        "    - {action: reset, proto: tcp, ports: [443], payload: tls}\n", "x.yaml")
    nft = Compiler(load_catalogue(LAB_CATALOGUE)).compile(scenario, Topology("vwlabx")).router_nft
    assert "tcp dport 443 @ih,0,16 0x1603 reject with tcp reset" in nft
    with pytest.raises(LabError, match="TCP segments only"):
        parse_scenario("description: x\npolicy:\n  cellular:\n"
                       "    - {action: drop, proto: udp, payload: tls}\n", "x.yaml")
