"""The runner's second look before `blocked`, against a real DNS server whose
first answer lies and a control that saw the name resolve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from probe.catalogue import parse_catalogue
from probe.checks.base import Budget, Observation
from probe.core.signing import ProbeKey
from probe.run.connectivity import Connectivity, ConnectivityWatch
from probe.run.network import MeasuredNetwork, NetworkWatch, link_facts
from probe.run.runner import RunOptions, RunState, tasks_of
from probe.store.spool import Spool
from tests.support.dns_server import NXDOMAIN, DnsServer

CATALOGUE = """\
version: 1
services:
  - id: chat
    name: Chat
    endpoints:
      - {check: dns, host: chat.test, role: messaging}
"""


class ControlSawItResolve:
    """Stands for the test helper's answer (the collector's own tests cover the helper)."""

    error = None

    async def __call__(self, endpoint: Any) -> Observation:
        return Observation.ok(answers=["93.184.216.34"])


async def one_record(server: DnsServer, tmp_path: Path) -> dict[str, Any]:
    catalogue = parse_catalogue(CATALOGUE)
    options = RunOptions(catalogue=catalogue, resolver=server.address, timeout=2.0)
    with Spool(tmp_path / "spool.sqlite3") as spool:
        state = RunState(options, ProbeKey.generate(), spool, budget=_budget(),
                         lookup=ControlSawItResolve(),  # type: ignore[arg-type]  # a stand-in for ControlAnswers: the same call, no HTTP
                         connectivity=ConnectivityWatch(
                             Connectivity(True, "test", "connected", 0.0)),
                         on_record=None,
                         watch=NetworkWatch(MeasuredNetwork(link_facts("auto"))))
        (task,) = tasks_of(catalogue)
        record = await state.finish(await state.observe(task))
        assert spool.pending(10) == [record]
    return record


def _budget() -> Budget:
    return Budget(None)


async def test_a_lie_that_is_not_repeated_is_not_blocked(tmp_path: Path) -> None:
    async with DnsServer({"chat.test": ["93.184.216.34"]}, lie_first=1) as server:
        record = await one_record(server, tmp_path)
    assert record["verdict"] == "open"
    confirmation = record["evidence"]["confirmation"]
    assert confirmation["outcome"] == "not_confirmed"
    assert confirmation["first"]["suspected"] == "dns.nxdomain"
    assert server.queries == ["chat.test", "chat.test"]


async def test_a_repeated_lie_is_blocked(tmp_path: Path) -> None:
    async with DnsServer({"chat.test": NXDOMAIN}) as server:
        record = await one_record(server, tmp_path)
    assert (record["verdict"], record["blocking"]) == ("blocked", "dns.nxdomain")
    assert record["evidence"]["confirmation"]["outcome"] == "confirmed"
    assert record["evidence"]["control"]["state"] == "ok"
