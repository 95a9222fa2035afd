"""The collector as a real process for tests: `voipwatch-collector serve` on a
free loopback port, its log in a file, stopped (or SIGKILLed) on demand."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import BIN

COLLECTOR = str(BIN / "voipwatch-collector")


class CollectorFailed(Exception):
    pass


class Collector:
    def __init__(self, data_dir: Path, db: str | None = None, args: Sequence[str] = (),
                 env: dict[str, str] | None = None, program: str = COLLECTOR,
                 cwd: Path | None = None, command: Sequence[str] | None = None,
                 default_workers: bool = False) -> None:
        self.program = program  # another install's voipwatch-collector (tests/deploy)
        self.cwd = cwd
        self.command = list(command) if command else None  # verbatim, e.g. a unit's ExecStart
        self.data_dir = data_dir
        self.db = db
        self.args = list(args)
        self.env = dict(os.environ if env is None else env)
        if not default_workers:
            # one API process unless a test asks for more (`--workers N`): the default,
            # one per core, would make every test's collector several processes and a
            # media child
            self.env.setdefault("VOIPWATCH_COLLECTOR_WORKERS", "1")
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / f"collector-{id(self)}.log"
        self.url = ""

    @property
    def db_args(self) -> list[str]:
        return ["--data-dir", str(self.data_dir)] + (["--db", self.db] if self.db else [])

    def start(self, timeout: float = 30) -> Collector:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        command = self.command or [self.program, "serve", *self.db_args, "--host", "127.0.0.1",
                                   "--port", str(self.port), *self.args]
        self.proc = subprocess.Popen(command, stdout=log, stderr=log, env=self.env,
                                     cwd=self.cwd)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CollectorFailed(f"the collector exited ({self.proc.returncode}): "
                                      f"{self.log()[-2000:]}")
            if not self.url:
                self.url = self._listening(offset)
            elif self._healthy():
                return self
            time.sleep(0.05)
        self.kill()
        raise CollectorFailed(f"the collector did not come up: {self.log()[-2000:]}")

    def _listening(self, offset: int) -> str:
        with self.log_path.open("rb") as handle:
            handle.seek(offset)
            for line in handle:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("event") == "listening":
                    self.port = int(entry["url"].rsplit(":", 1)[1])
                    return str(entry["url"])
        return ""

    def _healthy(self) -> bool:
        try:
            return httpx.get(self.url + "/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no cleanup, exactly like a crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def restart(self) -> Collector:
        """Start again on the same port and data (after stop or kill)."""
        self.url = ""
        return self.start()

    def cli(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        """`voipwatch-collector ARGS` on the same database."""
        command = [self.program, *args]
        if args and args[0] in ("probes", "token"):
            command = [self.program, *args[:2], *self.db_args, *args[2:]]
        elif args:
            command = [self.program, args[0], *self.db_args, *args[1:]]
        result = subprocess.run(command, capture_output=True, text=True, env=self.env,
                                timeout=120, cwd=self.cwd)
        if check and result.returncode != 0:
            raise CollectorFailed(f"{' '.join(args)}: {result.stderr}")
        return result

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def __enter__(self) -> Collector:
        if self.proc is not None and self.proc.poll() is None:
            return self  # started already (`with Collector(...).start() as c`)
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
