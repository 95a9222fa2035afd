"""Fair shares that hold across workers (issue 13): with `serve --workers 2`
one key cannot take every test-helper slot; the caps are global, not per
process; a key that waits is served before a key that already holds more."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import httpx

from probe.core.auth import sign_request
from probe.core.signing import ProbeKey
from tests.collector.harness import Collector
from tests.support.hostile import stun_success, udp_responder

PATH = "/api/v1/control"


class Recorder(asyncio.DatagramProtocol):
    """A STUN server that never answers, noting when each flow (source port) spoke."""

    def __init__(self) -> None:
        self.flows: dict[int, list[float]] = {}

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.flows.setdefault(addr[1], []).append(time.monotonic())


def max_overlap(flows: dict[int, list[float]], length: float) -> int:
    events = sorted([(t[0], 1) for t in flows.values()] +
                    [(t[0] + length, -1) for t in flows.values()])
    best = current = 0
    for _, step in events:
        current += step
        best = max(best, current)
    return best


async def test_one_key_cannot_take_every_slot_across_workers(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    recorder = Recorder()
    sink, _ = await loop.create_datagram_endpoint(lambda: recorder,
                                                  local_addr=("127.0.0.1", 0))
    silent_port = sink.get_extra_info("sockname")[1]
    env = {**os.environ, "VOIPWATCH_COLLECTOR_CONTROL_CONCURRENCY": "4",
           "VOIPWATCH_COLLECTOR_CONTROL_CONCURRENCY_PER_KEY": "2",
           "VOIPWATCH_COLLECTOR_CONTROL_TIMEOUT_SECONDS": "1.5",
           "VOIPWATCH_COLLECTOR_CONTROL_DEADLINE_SECONDS": "3"}
    collector = Collector(tmp_path / "c", None, ["--workers", "2", "--control-allow-private"],
                          env=env).start()
    greedy, polite = ProbeKey.generate(), ProbeKey.generate()
    try:
        async with udp_responder(lambda r: [stun_success(r)]) as answering, \
                httpx.AsyncClient(base_url=collector.url, timeout=30) as http:
            for key in (greedy, polite):
                await http.post("/api/v1/probes", json={"public_key": key.public_b64})

            async def post(key: ProbeKey, port: int, count: int) -> list[Any]:
                endpoints = [{"check": "stun", "host": "127.0.0.1", "port": port,
                              "role": "call", "label": f"e{i}"} for i in range(count)]
                body = json.dumps({"endpoints": endpoints}).encode()
                response = await http.post(PATH, content=body, headers={
                    "Content-Type": "application/json",
                    **sign_request(key, "POST", PATH, body)})
                assert response.status_code == 200, response.text
                return list(response.json()["results"])

            flood = [asyncio.ensure_future(post(greedy, silent_port, 12)) for _ in range(3)]
            await asyncio.sleep(0.4)
            served = await post(polite, answering.port, 2)
            flooded = [r for batch in await asyncio.gather(*flood) for r in batch]
    finally:
        collector.stop()
        sink.close()
    assert [r and r["status"] for r in served] == ["ok", "ok"]
    # the greedy key never ran more than its share at once, across both workers
    assert max_overlap(recorder.flows, 1.4) <= 2
    assert sum(r is not None for r in flooded) <= 2 * 3  # 2 at a time, 1.5 s each, 3 s
