"""The collector's container image, built and run with podman from Debian's
packages: up with two workers (so with its media service), /healthz answers,
a probe on the host registers, runs a pass with a throttle check against it
and uploads; and deploy/compose.yaml and its Caddyfile read by real parsers
(`podman-compose config`, `caddy validate`).

This machine reaches no image registry, so the image is built from a Debian
bookworm root made with debootstrap from the Debian mirror (Containerfile's
BASE argument), and pip inside the build trusts the host's CA bundle
(PIP_CERT), as a TLS-inspecting proxy here requires (tests/support/
container_image.py; a session that will run these tests starts the build in
the background once they are collected). The official images
the compose file names (postgres, caddy) cannot be pulled here, so the compose
stack itself is parsed, not started. Two settings of this sandbox's kernel are
worked around in a containers.conf of the test's own: cgroups in hybrid mode
(crun refuses them; runc runs) and no CAP_SYS_RESOURCE (podman's default
ulimits cannot be applied; lower ones are)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import httpx
import pytest
import yaml

from tests.conftest import BIN, ROOT, in_ci, probe_command
from tests.support import container_image

COMPOSE_ENV = {"VOIPWATCH_DB_PASSWORD": "secret", "VOIPWATCH_PUBLIC_IP": "203.0.113.10",
               "VOIPWATCH_DOMAIN": "collector.example.org",
               "VOIPWATCH_ACME_EMAIL": "ops@example.org"}


def missing(message: str) -> NoReturn:
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def require(command: str, package: str) -> str:
    # the virtualenv's first: Debian's podman-compose 1.0.3 has no `config`
    found = str(BIN / command) if (BIN / command).exists() else shutil.which(command)
    if found is None:
        missing(f"{command} is needed (apt-get install {package}; deploy/install-system-deps.sh)")
    return found


@pytest.fixture(scope="module")
def podman_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    try:
        return container_image.podman_env(tmp_path_factory.mktemp("containers"))
    except container_image.MissingTool as exc:
        missing(str(exc))


def podman(env: dict[str, str], *args: str, timeout: float = 120,
           check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, env=env,
                            timeout=timeout)
    if check:
        assert result.returncode == 0, f"podman {' '.join(args)}: {result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def image(podman_env: dict[str, str]) -> str:
    """Built in the background since the session collected this module
    (tests/support/container_image.py), or now."""
    try:
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


# --- the compose file and its Caddyfile, parsed by the real tools ---------------------


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require("podman-compose", "podman-compose (pip)"), "-f",
                           str(ROOT / "deploy" / "compose.yaml"), "config"],
                          capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)


def test_compose_file(podman_env: dict[str, str], tmp_path: Path) -> None:
    result = compose_config({**podman_env, **COMPOSE_ENV})
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    assert set(services) == {"postgres", "collector", "caddy", "backup"}
    assert all(s["network_mode"] == "host" for s in services.values())
    collector = services["collector"]["environment"]
    assert collector["VOIPWATCH_COLLECTOR_WORKERS"] == "2"
    assert collector["VOIPWATCH_COLLECTOR_REFLECTOR_ADDRESS"] == "203.0.113.10"
    assert collector["VOIPWATCH_COLLECTOR_DB"] == \
        "postgresql://voipwatch:secret@127.0.0.1:5432/voipwatch"
    assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert "pg_dump" in " ".join(services["backup"]["entrypoint"])
    assert "backups:/backups" in services["backup"]["volumes"]
    assert {"pgdata", "backups", "collector", "caddy-data"} <= set(config["volumes"])
    # a missing secret is named, not defaulted
    missing = compose_config({**podman_env, **COMPOSE_ENV, "VOIPWATCH_DB_PASSWORD": ""})
    assert missing.returncode != 0 and "VOIPWATCH_DB_PASSWORD" in missing.stderr
    example = dict(line.split("#")[0].strip().split("=", 1)
                   for line in (ROOT / "deploy" / "compose.env.example").read_text().splitlines()
                   if "=" in line.split("#")[0])
    assert set(COMPOSE_ENV) <= set(example)


def test_caddyfile(tmp_path: Path) -> None:
    caddy = require("caddy", "caddy")
    result = subprocess.run([caddy, "validate", "--adapter", "caddyfile", "--config",
                             str(ROOT / "deploy" / "caddy" / "Caddyfile")],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, **COMPOSE_ENV, "HOME": str(tmp_path),
                                 "XDG_DATA_HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)})
    assert result.returncode == 0 and "Valid configuration" in result.stdout + result.stderr, \
        result.stderr
