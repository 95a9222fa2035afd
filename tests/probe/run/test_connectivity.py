"""Connectivity: the pre-check tries the control and the collector, and the
pass's watch takes any later proof (an endpoint that worked, the control's
answer) before a failure is judged."""

from __future__ import annotations

import asyncio
import socket

from probe.checks.base import Observation, Status
from probe.core.failures import Failure
from probe.run.connectivity import Connectivity, ConnectivityWatch, precheck, targets_for
from tests.support.tcp_servers import closed_port


def test_targets_are_the_control_and_the_collector_each_once() -> None:
    both = targets_for("http://control.test:8080/", "https://collector.test/")
    assert [(t.role, t.name) for t in both] == [("control", "control.test:8080"),
                                                ("collector", "collector.test:443")]
    same = targets_for("http://c.test/", "http://c.test/")
    assert [t.role for t in same] == ["control"]
    assert {t.role for t in targets_for(None, None)} == {"default"}


async def test_the_collector_unreachable_is_recorded_not_fatal() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    try:
        result = await precheck(targets_for(f"http://127.0.0.1:{port}/",
                                            f"http://127.0.0.1:{closed_port()}/"), None, 2.0)
        assert result.ok and result.reached == ["control"]
        await result.attempts
        assert list(result.unreachable) == ["collector"]
        watch = ConnectivityWatch(result)
        assert watch.evidence() == {"ok": True, "target": f"127.0.0.1:{port}",
                                    "proven_by": "precheck", "unreachable": ["collector"]}
    finally:
        listener.close()


async def test_nothing_reached_is_no_connectivity() -> None:
    result = await precheck(targets_for(f"http://127.0.0.1:{closed_port()}/", None), None, 2.0)
    assert not result.ok and list(result.unreachable) == ["control"]


async def test_a_failure_waits_for_the_proof_an_endpoint_may_still_give() -> None:
    watch = ConnectivityWatch(Connectivity(False, "collector.test:443", "refused", 1.0),
                              observations=2)
    failed = Observation.failed(Failure.GENERIC_TIMEOUT, None)
    watch.note(failed)
    watch.counted()
    waiting = asyncio.ensure_future(watch.known())
    await asyncio.sleep(0.05)
    assert not waiting.done()  # one endpoint is still running
    watch.note(Observation(status=Status.OK))
    watch.counted()
    assert await waiting is True
    assert watch.evidence()["proven_by"] == "endpoint"


async def test_every_observation_failed_means_no_connectivity() -> None:
    watch = ConnectivityWatch(Connectivity(False, "collector.test:443", "refused", 1.0),
                              observations=1)
    watch.note(Observation.failed(Failure.GENERIC_TIMEOUT, None))
    watch.counted()
    assert await watch.known() is False


async def test_the_control_answering_proves_the_network() -> None:
    answered = False
    watch = ConnectivityWatch(Connectivity(False, "c.test:80", "timeout", 1.0),
                              lambda: answered, observations=5)
    assert not watch.ok
    answered = True
    assert await watch.known() is True and watch.proven_by == "control"
