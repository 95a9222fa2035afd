"""Fair shares that hold across workers (issue 13): with `serve --workers 2`
one key cannot take every test-helper slot; the caps are global, not per
process; a key that waits is served before a key that already holds more."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from probe.core.auth import sign_request
from probe.core.signing import ProbeKey
from tests.collector.harness import Collector
from tests.support.hostile import stun_success, udp_responder

PATH = "/api/v1/control"


class Recorder:
    """A STUN server that never answers, noting when each flow (source port) spoke;
    in a thread of its own, so a busy event loop does not bunch the times up."""

    def __init__(self) -> None:
        self.flows: dict[int, list[float]] = {}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self.stop.is_set():
            try:
                _, addr = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            self.flows.setdefault(addr[1], []).append(time.monotonic())

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def max_overlap(flows: dict[int, list[float]]) -> int:
    """Most flows that were seen sending at the same time (first to last datagram:
    a check lasts longer, so this can only undercount)."""
    events = sorted([(t[0], 1) for t in flows.values()] + [(t[-1], -1) for t in flows.values()])
    best = current = 0
    for _, step in events:
        current += step
        best = max(best, current)
    return best


async def test_one_key_cannot_take_every_slot_across_workers(tmp_path: Path) -> None:
    recorder = Recorder()
    silent_port = recorder.port
    env = {**os.environ, "VOIPWATCH_COLLECTOR_CONTROL_CONCURRENCY": "4",
           "VOIPWATCH_COLLECTOR_CONTROL_CONCURRENCY_PER_KEY": "2",
           # each check sends at 0, 0.5 and 1.5 s, then waits until 3 s
           "VOIPWATCH_COLLECTOR_CONTROL_TIMEOUT_SECONDS": "3",
           "VOIPWATCH_COLLECTOR_CONTROL_DEADLINE_SECONDS": "8"}
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
        recorder.close()
    assert [r and r["status"] for r in served] == ["ok", "ok"]
    # the greedy key never ran more than its share at once, across both workers
    assert len(recorder.flows) >= 4 and max_overlap(recorder.flows) <= 2
    assert sum(r is not None for r in flooded) <= 2 * 3  # 2 at a time, 3 s each, 8 s
