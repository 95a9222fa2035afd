"""`make run`: one full probe pass against an embedded collector.

Starts `voipwatch-collector serve` in the background (SQLite under ./var/), or
reuses one already answering /healthz on the port; creates and registers a
probe key (VOIPWATCH_HOME=./var/probe); runs one pass over the catalogue with
the collector as the upload target and the test helper; the probe prints the
results table and uploads; then this prints the address of the results page.

    python -m collector.quickstart [--catalogue FILE] [--var DIR] [--port N] [-- PROBE ARGS]

The embedded collector is local and allows its test helper to reach loopback
and private addresses, so a lab catalogue (CATALOGUE=...) works too.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from collector.routers.health import SERVICE
from collector.settings import DEFAULT_PORT
from probe.core.errors import VoipwatchError

BIN = Path(sys.executable).parent
PROG = "make run"


class QuickstartError(VoipwatchError):
    pass


def _say(line: str) -> None:
    sys.stderr.write(f"{PROG}: {line}\n")
    sys.stderr.flush()


def health(url: str) -> str | None:
    """'ours' if a voipwatch collector answers at `url`, 'other' if something
    else does, None if nothing does."""
    try:
        response = httpx.get(url + "/healthz", timeout=2)
    except httpx.ConnectError:
        return None
    except httpx.HTTPError:  # something listens, but does not answer as we do
        return "other"
    try:
        ours = response.status_code == 200 and response.json().get("service") == SERVICE
    except ValueError:
        ours = False
    return "ours" if ours else "other"


def ensure_collector(var: Path, port: int) -> str:
    url = f"http://127.0.0.1:{port}"
    state = health(url)
    if state == "ours":
        _say(f"reusing the collector already running at {url}")
        return url
    if state == "other":
        raise QuickstartError(f"port {port} is taken by something that is not a voipwatch "
                              "collector; choose another with RUN_PORT=N")
    data = var / "collector"
    data.mkdir(parents=True, exist_ok=True)
    log_path = var / "collector.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [str(BIN / "voipwatch-collector"), "serve", "--data-dir", str(data),
             "--host", "127.0.0.1", "--port", str(port), "--control-allow-private"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    (var / "collector.pid").write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise QuickstartError(f"the collector did not start (see {log_path}): "
                                  + " | ".join(tail))
        if health(url) == "ours":
            _say(f"started a collector at {url} (pid {proc.pid}, data in {data}, "
                 f"log in {log_path})")
            return url
        time.sleep(0.1)
    raise QuickstartError(f"the collector did not answer within 60 s (see {log_path})")


def probe(*args: str, env: dict[str, str]) -> None:
    command = [str(BIN / "voipwatch-probe"), *args]
    result = subprocess.run(command, env=env, check=False)
    if result.returncode != 0:
        raise QuickstartError(f"`voipwatch-probe {args[0]}` failed (exit {result.returncode})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m collector.quickstart",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalogue", default=None, help="catalogue YAML (default: the "
                        "probe's own, also at configs/catalogue.yaml)")
    parser.add_argument("--var", default="var", help="state directory (default ./var)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("RUN_PORT") or
                                                        DEFAULT_PORT))
    parser.add_argument("probe_args", nargs=argparse.REMAINDER,
                        help="after --: more arguments for `voipwatch-probe run`")
    args = parser.parse_args(argv)
    var = Path(args.var).resolve()
    if args.catalogue and not Path(args.catalogue).is_file():
        _say(f"error: catalogue not found: {args.catalogue}")
        return 2
    env = dict(os.environ, VOIPWATCH_HOME=str(var / "probe"))
    try:
        url = ensure_collector(var, args.port)
        probe("register", "--collector", url, env=env)
        extra = [a for a in args.probe_args if a != "--"]
        catalogue = ["--catalogue", args.catalogue] if args.catalogue else []
        probe("run", *catalogue, "--collector", url, *extra, env=env)
    except QuickstartError as exc:
        _say(f"error: {exc}")
        return 2
    sys.stdout.write(f"\nResults page: {url}/\n"
                     f"Stop the collector with: kill $(cat {var / 'collector.pid'})\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
