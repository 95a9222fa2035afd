"""Run inside a fresh network namespace (`unshare -n`, made by the test): a
collector whose test helper is asked about names that a hostile DNS server
answers with a public address first and with loopback next (rebinding), or
with records it rotates. `PUBLIC` is put on the namespace's loopback so the
public address answers too, and nothing ever leaves the namespace.

Prints one JSON object: which server each endpoint reached, and the answers.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

PUBLIC = "192.88.99.9"  # counts as global (docs/lab.md), routed nowhere outside


async def main(workdir: Path) -> dict[str, Any]:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "addr", "add", f"{PUBLIC}/32", "dev", "lo"], check=True)
    from probe.core.auth import sign_request
    from probe.core.signing import ProbeKey
    from tests.collector.harness import Collector
    from tests.support.dns_server import DnsServer

    seen: dict[str, list[str]] = {"public": [], "local": []}

    async def listen(host: str, label: str) -> asyncio.Server:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            seen[label].append(host)
            writer.close()
        return await asyncio.start_server(handle, host, 7070)

    servers = [await listen(PUBLIC, "public"), await listen("127.0.0.1", "local")]
    turn_seen: list[bytes] = []

    class Turn(asyncio.DatagramProtocol):  # a TURN server on a public address that logs
        def datagram_received(self, data: bytes, addr: Any) -> None:
            turn_seen.append(data)

    turn, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        Turn, local_addr=(PUBLIC, 3478))
    sequence: dict[str, list[list[str] | str]] = {
        "rebind.test": [[PUBLIC], ["127.0.0.1"]],
        "rotate.test": [[PUBLIC, "127.0.0.1"], ["127.0.0.1", PUBLIC]],
    }
    async with DnsServer({"gone.test": "nxdomain"}, sequence=sequence) as dns:
        collector = Collector(workdir / "collector", None,
                              ["--resolver", f"127.0.0.1:{dns.port}"]).start()
        try:
            import httpx

            key = ProbeKey.generate()
            async with httpx.AsyncClient(base_url=collector.url, timeout=30) as http:
                await http.post("/api/v1/probes", json={"public_key": key.public_b64})
                results = []
                turn_endpoint = {"check": "turn", "host": PUBLIC, "username": "u",
                                 "password": "p", "peer": "127.0.0.1:7", "role": "call"}
                for host in ("rebind.test", "rotate.test", "turn-peer"):
                    seen_before = {k: len(v) for k, v in seen.items()}
                    endpoint = turn_endpoint if host == "turn-peer" else {
                        "check": "tcp", "host": host, "port": 7070, "role": "call"}
                    body = json.dumps({"endpoints": [endpoint]}).encode()
                    response = await http.post("/api/v1/control", content=body, headers={
                        "Content-Type": "application/json",
                        **sign_request(key, "POST", "/api/v1/control", body)})
                    await asyncio.sleep(0.2)
                    results.append({"host": host, "status": response.status_code,
                                    "result": response.json()["results"][0],
                                    "reached": [k for k, v in seen.items()
                                                if len(v) > seen_before[k]]})
        finally:
            collector.stop()
    for server in servers:
        server.close()
    turn.close()
    return {"results": results, "queries": dns.queries, "turn_datagrams": len(turn_seen)}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(Path(sys.argv[1])))))
