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


async def test_a_spool_that_fills_up_stops_the_pass_and_loses_nothing(tmp_path: Path) -> None:
    """The spool cannot take a record in the middle of a pass (SQLite's own
    "database or disk is full", as on a full disk): the pass stops there, what
    was spooled stays, the records signed but not spooled are saved beside the
    spool, verifiable, and one sentence says where each measurement is."""
    import json
    import re

    from probe.core.signing import verify_record
    from probe.run.runner import SpoolFailed, run_pass
    from tests.support.tcp_servers import closed_port

    total = 40
    port = closed_port()
    catalogue = parse_catalogue("version: 1\nservices:\n  - {id: s, name: S, endpoints: [\n"
                                + ",\n".join(f"    {{check: tcp, host: 127.0.0.1, port: {port},"
                                             " role: call}" for _ in range(total)) + "]}\n")
    key = ProbeKey.generate()
    path = tmp_path / "spool.sqlite3"
    with Spool(path) as spool:
        pages = spool.db.execute("PRAGMA page_count").fetchone()[0]
        spool.db.execute(f"PRAGMA max_page_count = {pages + 4}")
        try:
            await run_pass(RunOptions(catalogue=catalogue, timeout=2.0), key, spool)
        except SpoolFailed as exc:
            stopped = exc
        else:
            raise AssertionError("the pass went on without its spool")
    said = str(stopped)
    assert stopped.exit_status == 2 and "\n" not in said
    found = re.fullmatch(
        rf"cannot write the spool {re.escape(str(path))}: database or disk is full; the pass "
        rf"stopped: (\d+) of its {total} measurements are in the spool, (\d+) more in (\S+) "
        r"\(the next run or upload spools them\)(?:, (\d+) were not made)?", said)
    assert found, said
    kept, unsaved, saved, missing = found.groups()
    with Spool(path) as spool:
        in_spool = spool.pending(1000)
    assert len(in_spool) == int(kept) > 0
    assert sorted(r["id"] for r in in_spool) == sorted(r["id"] for r in stopped.records)
    lines = Path(saved).read_text().splitlines()
    assert Path(saved).parent == tmp_path and len(lines) == int(unsaved) > 0
    for line in lines:
        verify_record(json.loads(line), key.public_raw)
    assert int(kept) + int(unsaved) + int(missing or 0) == total
    ids = [r["id"] for r in in_spool] + [json.loads(line)["id"] for line in lines]
    assert len(set(ids)) == len(ids)
    with Spool(path) as spool:  # room again: the next pass takes them back
        assert spool.take_back() == int(unsaved)
        assert sorted(r["id"] for r in spool.pending(1000)) == sorted(ids)
