"""The collector's container image, built and run with podman from Debian's
packages: up with two workers (so with its media service), /healthz answers,
a probe on the host registers, runs a pass with a throttle check against it
and uploads. Every test here runs the image (tests/conftest.py starts building
it as soon as a session has collected one of them).

This machine reaches no image registry, so the image is built from a Debian
bookworm root made with debootstrap from the Debian mirror (Containerfile's
BASE argument), and pip inside the build trusts the host's CA bundle
(PIP_CERT), as a TLS-inspecting proxy here requires (tests/support/
container_image.py). Two settings of this sandbox's kernel are worked around
in a containers.conf of the test's own: cgroups in hybrid mode (crun refuses
them; runc runs) and no CAP_SYS_RESOURCE (podman's default ulimits cannot be
applied; lower ones are)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import probe_command
from tests.deploy.conftest import missing
from tests.support import container_image


def podman(env: dict[str, str], *args: str, timeout: float = 120,
           check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, env=env,
                            timeout=timeout)
    if check:
        assert result.returncode == 0, f"podman {' '.join(args)}: {result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def image(podman_env: dict[str, str], request: pytest.FixtureRequest) -> str:
    """Built in the background since the session collected this module, by this
    process or by pytest-xdist's controller (tests/support/container_image.py)."""
    status = getattr(request.config, "workerinput", {}).get(container_image.STATUS_KEY)
    try:
        if status:
            return container_image.wait_for(Path(status))
        return container_image.start().result()
    except container_image.MissingTool as exc:
        missing(str(exc))
    except container_image.ImageBuildError as exc:
        pytest.fail(str(exc))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def container(podman_env: dict[str, str], image: str) -> Iterator[str]:
    name = f"vw-smoke-{uuid.uuid4().hex[:8]}"
    port = free_port()
    podman(podman_env, "volume", "create", name)
    podman(podman_env, "run", "-d", "--name", name, "--network", "host",
           "-v", f"{name}:/data", "-e", "VOIPWATCH_COLLECTOR_HOST=127.0.0.1",
           "-e", f"VOIPWATCH_COLLECTOR_PORT={port}", "-e", "VOIPWATCH_COLLECTOR_WORKERS=2",
           "-e", "VOIPWATCH_COLLECTOR_CONTROL_ALLOW_PRIVATE=true",
           # the test's throttle check asks for a free ephemeral port
           "-e", "VOIPWATCH_COLLECTOR_REFLECTOR_PORTS=1024-65535", image)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                logs = podman(podman_env, "logs", name, check=False)
                pytest.fail(f"the container did not come up: {logs.stdout}{logs.stderr}")
            time.sleep(0.5)
        yield url
    finally:
        podman(podman_env, "stop", "-t", "15", name, check=False)
        podman(podman_env, "rm", "-f", name, check=False)
        podman(podman_env, "volume", "rm", "-f", name, check=False)


def test_the_image_serves_probes(container: str, tmp_path: Path,
                                 podman_env: dict[str, str]) -> None:
    url = container
    health = httpx.get(url + "/healthz").json()
    assert health["status"] == "ok" and health["database"] == "sqlite"
    env = {**os.environ, "VOIPWATCH_HOME": str(tmp_path / "home")}
    registered = subprocess.run([*probe_command(), "register", "--collector", url],
                                capture_output=True, text=True, env=env, timeout=60)
    assert registered.returncode == 0, registered.stderr
    server = socket.create_server(("127.0.0.1", 0))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe_port:
        probe_port.bind(("127.0.0.1", 0))
        udp = probe_port.getsockname()[1]
    catalogue = tmp_path / "catalogue.yaml"
    catalogue.write_text(f"""\
version: 1
services:
  - id: smoke
    name: Smoke
    endpoints:
      - {{check: tcp, host: 127.0.0.1, port: {server.getsockname()[1]}, role: messaging}}
      - {{check: throttle, url: 'https://collector.example.org', port: {udp},
          transport: udp, profile: whatsapp, role: call}}
""")
    with server:
        run = subprocess.run([*probe_command(), "run", "--catalogue", str(catalogue),
                              "--link-type", "ethernet", "--json"],
                             capture_output=True, text=True, env=env, timeout=180)
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    verdicts = {r["endpoint"]["check"]: r["verdict"] for r in records}
    assert verdicts == {"tcp": "open", "throttle": "open"}, records
    stored = httpx.get(url + "/api/v1/measurements", params={"service": "smoke"}).json()
    assert {item["measurement"]["id"] for item in stored["items"]} == {r["id"] for r in records}
