"""Two layers for names (probe.run.names): when a check's own lookup fails or
is forged where the control resolved the name. End to end in the lab
(`dns-nxdomain`, `dns-bogon`, `dns-mismatch`); here the decisions, against a
real DNS server on loopback for the helper's side."""

from __future__ import annotations

from typing import Any

from probe.catalogue import ENDPOINT_ADAPTER
from probe.checks.base import Context, Observation, Operation, Status
from probe.core.failures import Failure
from probe.core.summary import summarise
from probe.run.helper import public_addresses
from probe.run.names import at_address, control_addresses, tampered, worth_a_look
from tests.support.dns_server import DnsServer

TRUE = "93.184.216.34"


def endpoint(**fields: Any) -> Any:
    return ENDPOINT_ADAPTER.validate_python({"role": "call", **fields})


def control(*addresses: str) -> Observation:
    return Observation.ok(resolved=list(addresses))


async def test_a_failed_lookup_where_the_control_resolved_is_the_dns_method() -> None:
    stun = endpoint(check="stun", host="stun.example.org")
    own = Observation.failed(Failure.DNS_NXDOMAIN, Operation.RESOLVE, phase="resolve")
    found = await tampered(stun, own, control(TRUE), Context())
    assert found is not None
    observation, trouble = found
    assert (observation.failure, observation.operation) == (Failure.DNS_NXDOMAIN,
                                                            Operation.DNS_QUERY)
    assert observation.evidence["name"] == {"query": "stun.example.org", "control": [TRUE],
                                            "local": {"failure": "dns_nxdomain_error"}}
    assert trouble.addresses == (TRUE,)
    empty = Observation.failed(Failure.DNS_NO_ANSWER, Operation.RESOLVE)
    found = await tampered(stun, empty, control(TRUE), Context())
    assert found is not None and found[0].operation is Operation.DNS_ANSWER


async def test_without_the_controls_addresses_nothing_is_claimed() -> None:
    tcp = endpoint(check="tcp", host="chat.example.org", port=5222)
    own = Observation.failed(Failure.DNS_NXDOMAIN, Operation.RESOLVE)
    assert await tampered(tcp, own, None, Context()) is None
    assert await tampered(tcp, own, control(), Context()) is None
    # a private address in the helper's answer is never used
    assert control_addresses(control("10.0.0.7", "127.0.0.1", "192.168.1.1")) == ()
    assert await tampered(tcp, own, control("10.0.0.7"), Context()) is None


async def test_a_bogon_answer_is_the_dns_method_whatever_the_check_saw() -> None:
    tcp = endpoint(check="tcp", host="chat.example.org", port=5222)
    own = Observation.failed(Failure.GENERIC_TIMEOUT, Operation.TCP_CONNECT,
                             address="10.10.34.34", phase="connect")
    found = await tampered(tcp, own, control(TRUE), Context())
    assert found is not None
    observation, _ = found
    assert observation.failure is Failure.DNS_BOGON
    assert observation.evidence["name"]["local"] == {"address": "10.10.34.34"}
    assert observation.evidence["name"]["at_local_address"] == {
        "status": "failed", "failure": "generic_timeout_error", "phase": "connect"}
    # a success at a private address is looked at too (a sinkhole answering)
    assert worth_a_look(tcp, Observation.ok(address="10.10.34.34"))


async def test_the_same_address_as_the_control_or_a_success_is_left_alone() -> None:
    tls = endpoint(check="tls", host="chat.example.org")
    failed = Observation.failed(Failure.CONNECTION_RESET, Operation.TLS_HANDSHAKE,
                                address=TRUE)
    assert await tampered(tls, failed, control(TRUE), Context()) is None
    assert not worth_a_look(tls, Observation.ok(address="192.88.99.67"))  # a CDN, maybe
    assert not worth_a_look(endpoint(check="tcp", host=TRUE, port=80),
                            Observation.failed(Failure.DNS_NXDOMAIN, Operation.RESOLVE))


async def test_a_certificate_invalid_for_the_name_at_another_address_is_a_mismatch() -> None:
    tls = endpoint(check="tls", host="chat.example.org")
    own = Observation.failed(Failure.SSL_INVALID_HOSTNAME, Operation.TLS_HANDSHAKE,
                             address="192.88.99.66", phase="handshake")
    found = await tampered(tls, own, control(TRUE), Context())
    assert found is not None
    assert found[0].failure is Failure.DNS_MISMATCH
    assert found[0].evidence["name"]["local"]["consistency"] == "tls_invalid"


def test_the_check_goes_on_at_the_true_address_with_the_name_for_tls() -> None:
    turn = endpoint(check="turn", host="relay.example.org", transport="tls", port=443)
    moved = at_address(turn, TRUE)
    assert (moved.host, moved.sni, moved.port) == (TRUE, "relay.example.org", 443)
    tcp = at_address(endpoint(check="tcp", host="chat.example.org", port=5222), TRUE)
    assert tcp.host == TRUE


async def test_the_helper_answers_the_names_public_addresses_only() -> None:
    zone: dict[str, list[str] | str] = {"relay.example.org": [TRUE, "10.1.2.3"]}
    async with DnsServer(zone) as server:
        stun = endpoint(check="stun", host="relay.example.org")
        assert await public_addresses(stun, server.address, 2.0) == [TRUE]
        gone = endpoint(check="stun", host="gone.example.org")
        assert await public_addresses(gone, server.address, 2.0) == []
        dns = endpoint(check="dns", host="relay.example.org")
        assert await public_addresses(dns, server.address, 2.0) == []


def test_a_service_blocked_by_dns_reads_blocked_in_the_summary() -> None:
    def record(check: str, verdict: str, blocking: str | None) -> dict[str, Any]:
        return {"service": "parla", "endpoint": {"check": check, "role": "call"},
                "verdict": verdict, "blocking": blocking, "status": str(Status.FAILED)}

    records = [record("stun", "blocked", "dns.nxdomain"), record("sip", "blocked",
                                                                 "dns.nxdomain")]
    assert summarise(records) == {"parla": {"call": "blocked"}}
