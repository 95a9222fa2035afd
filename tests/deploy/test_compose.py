"""deploy/compose.yaml and its Caddyfile read by the real tools (`podman-compose
config`, `caddy validate`). The official images the compose file names
(postgres, caddy) cannot be pulled here, so the stack is parsed, not started;
tests/deploy/test_container.py runs the collector's own image."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import yaml

from tests.conftest import BIN, ROOT
from tests.deploy.conftest import missing

COMPOSE_ENV = {"VOIPWATCH_DB_PASSWORD": "secret", "VOIPWATCH_PUBLIC_IP": "203.0.113.10",
               "VOIPWATCH_DOMAIN": "collector.example.org",
               "VOIPWATCH_ACME_EMAIL": "ops@example.org"}


def require(command: str, package: str) -> str:
    # the virtualenv's first: Debian's podman-compose 1.0.3 has no `config`
    found = str(BIN / command) if (BIN / command).exists() else shutil.which(command)
    if found is None:
        missing(f"{command} is needed (apt-get install {package}; deploy/install-system-deps.sh)")
    return found


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
