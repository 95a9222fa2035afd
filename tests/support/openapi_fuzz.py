"""Requests generated from the collector's OpenAPI (schemathesis) against a real
collector, counting server errors (5xx) and partial writes (rows stored that
no `accepted` answer accounts for). Half of the requests to signed routes are
signed by a registered key, so the generated bodies get past the gate.

Run it in a network namespace of its own (`unshare -n`, see `in_namespace`):
the test helper, the reference peer and the reflector then cannot reach
anything a generated request names, whatever it names.

    python -m tests.support.openapi_fuzz WORKDIR TOTAL   (prints one JSON object)
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

SIGNED = ("/api/v1/measurements", "/api/v1/control", "/api/v1/webrtc/", "/api/v1/reflector/")


def in_namespace(workdir: Path, total: int, timeout: float) -> dict[str, Any]:
    """Run this module in a fresh network namespace; its JSON result."""
    root = Path(__file__).resolve().parent.parent.parent
    done = subprocess.run(["unshare", "-n", sys.executable, "-m", "tests.support.openapi_fuzz",
                           str(workdir), str(total)], capture_output=True, text=True,
                          timeout=timeout, cwd=root)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(url: str, database: Path, total: int, seed: int = 13) -> dict[str, Any]:
    import httpx
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings

    from probe.core.auth import sign_request
    from probe.core.signing import ProbeKey

    key = ProbeKey.generate()
    httpx.post(url + "/api/v1/probes", json={"public_key": key.public_b64}, timeout=30)
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    operations = [found.ok() for found in schema.get_all_operations()]
    rng = random.Random(seed)
    statuses: Counter[str] = Counter()
    errors: list[str] = []
    accepted = 0
    per_operation = -(-total // len(operations))  # rounded up: at least `total` in all
    client = httpx.Client(timeout=30)

    def send(case: Any) -> None:
        nonlocal accepted
        kwargs = case.as_transport_kwargs(base_url=url)
        headers = {k: v for k, v in kwargs.get("headers", {}).items()
                   if not k.lower().startswith("x-voipwatch")}
        body: bytes | None = None
        if "json" in kwargs:
            body = json.dumps(kwargs["json"]).encode()
            headers["Content-Type"] = "application/json"
        elif kwargs.get("data") is not None:
            data = kwargs["data"]
            body = data if isinstance(data, bytes) else str(data).encode()
        path = httpx.URL(kwargs["url"]).path
        if path.startswith(SIGNED) and rng.random() < 0.5:
            headers.update(sign_request(key, kwargs["method"], path, body or b""))
        try:
            response = client.request(kwargs["method"], kwargs["url"], content=body,
                                      headers=headers, params=kwargs.get("params"))
        except httpx.HTTPError as exc:
            statuses["transport_error"] += 1
            errors.append(f"{kwargs['method']} {path}: {exc!r}")
            return
        statuses[f"{response.status_code // 100}xx"] += 1
        if response.status_code >= 500:
            errors.append(f"{kwargs['method']} {path} -> {response.status_code}: "
                          f"{response.text[:200]}")
        if path == "/api/v1/measurements" and kwargs["method"] == "POST" \
                and response.status_code == 200:
            accepted += sum(r.get("status") == "accepted" for r in response.json()["results"])

    start = time.monotonic()
    for operation in operations:
        strategy = operation.as_strategy()
        sent = 0
        while sent < per_operation:  # hypothesis may stop early: go on until the share is met
            @given(strategy)
            @settings(max_examples=per_operation - sent, database=None,
                      phases=[Phase.generate], deadline=None,
                      suppress_health_check=list(HealthCheck))
            def one(case: Any) -> None:
                nonlocal sent
                sent += 1
                send(case)

            before = sent
            one()
            if sent == before:
                break
    client.close()
    with sqlite3.connect(database) as conn:
        stored = conn.execute("SELECT COUNT(*) FROM measurements").fetchone()[0]
    requests = sum(statuses.values())
    return {"requests": requests, "operations": len(operations), "statuses": dict(statuses),
            "server_errors": statuses["5xx"] + statuses["transport_error"],
            "errors": errors[:10], "accepted": accepted, "stored": stored,
            "partial_writes": stored - accepted, "seconds": round(time.monotonic() - start, 1)}


def main(workdir: Path, total: int) -> dict[str, Any]:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    from tests.collector.harness import Collector

    catalogue = workdir / "catalogue.yaml"
    catalogue.write_text("version: 1\nservices:\n  - id: lab\n    name: Lab\n    endpoints:\n"
                         "      - {check: tcp, host: 127.0.0.1, port: 9, role: call}\n")
    env = {**os.environ, "VOIPWATCH_COLLECTOR_CONTROL_DEADLINE_SECONDS": "2",
           "VOIPWATCH_COLLECTOR_INGEST_QUOTA_PER_DAY": "100000000",
           "VOIPWATCH_COLLECTOR_UNSIGNED_RATE_PER_MINUTE": "100000",
           "VOIPWATCH_COLLECTOR_CONTROL_RATE_PER_MINUTE": "100000",
           "VOIPWATCH_COLLECTOR_REFLECTOR_RATE_PER_MINUTE": "100000",
           "VOIPWATCH_COLLECTOR_WEBRTC_SESSION_SECONDS": "2"}
    collector = Collector(workdir / "collector", None, ["--catalogue", str(catalogue)],
                          env=env).start()
    try:
        result = run(collector.url, collector.data_dir / "collector.sqlite3", total)
    finally:
        collector.stop()
    result["log_tracebacks"] = collector.log().count("Traceback")
    return result


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), int(sys.argv[2]))))
