"""Fault injection for the exactly-once promise (issue 13): random SIGKILLs of
the probe (during a pass, during an upload) and of the collector (during an
upload), a full disk under the collector and under the probe, and a collector
that answers 500s, drops answers after storing, or hangs. Afterwards the
spool is drained with clean uploads and every record that ever entered the
spool is looked for in the collector: lost (never stored) and duplicated
(stored more than once) must both be 0.

Every record that enters the spool is noted, in the same transaction, by a
trigger this module adds to the spool's database (`audit`): no record can
enter and leave unseen, whatever is killed when.

Used by tests/collector/test_fault_injection.py (a few kills) and
bench/faults.py (100 kills per backend).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tests.collector.harness import Collector
from tests.conftest import probe_command

# a campaign uploads tens of thousands of records with one key: far over a probe's quota
CAMPAIGN_ENV = {**os.environ, "VOIPWATCH_COLLECTOR_INGEST_QUOTA_PER_DAY": "100000000"}

AUDIT = """
CREATE TABLE IF NOT EXISTS audit (id TEXT PRIMARY KEY);
CREATE TRIGGER IF NOT EXISTS audit_insert AFTER INSERT ON records
BEGIN INSERT OR IGNORE INTO audit (id) VALUES (new.id); END;
"""


@dataclass
class Outcome:
    kills: Counter[str] = field(default_factory=Counter)
    spooled: int = 0  # records that ever entered the spool
    stored: int = 0
    lost: int = 0  # entered the spool, neither stored nor still waiting in it
    pending: int = 0  # still waiting in the spool after the drain (must be 0 too)
    duplicated: int = 0
    phantom: int = 0  # stored for this key, never in the spool
    rejected_in_spool: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


class Campaign:
    """One probe (its own VOIPWATCH_HOME) and one collector, and the faults."""

    def __init__(self, workdir: Path, collector: Collector, endpoints: int = 12,
                 seed: int = 7) -> None:
        self.workdir = workdir
        self.collector = collector
        self.rng = random.Random(seed)
        self.home = workdir / "probe-home"
        self.env = {**os.environ, "VOIPWATCH_HOME": str(self.home)}
        self.endpoints = endpoints
        self.outcome = Outcome()
        self.catalogue = workdir / "catalogue.yaml"
        self._server: Any = None

    # --- set-up -----------------------------------------------------------------------

    def start(self) -> Campaign:
        self._tcp_server()
        lines = ["version: 1", "services:", "  - id: faults", "    name: Faults",
                 "    endpoints:"]
        lines += [f"      - {{check: tcp, host: 127.0.0.1, port: {self.port}, role: call, "
                  f"label: e{i}}}" for i in range(self.endpoints)]
        self.catalogue.write_text("\n".join(lines) + "\n")
        self.probe("keygen", check=True)
        self.probe("register", "--collector", self.collector.url, check=True)
        self.key_id = self._key_id()
        with self._spool() as db:
            db.executescript(AUDIT)
        return self

    def _tcp_server(self) -> None:
        import socket

        server = socket.create_server(("127.0.0.1", 0))
        server.listen(256)
        self.port = server.getsockname()[1]
        self._server = server

        def accept() -> None:
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                conn.close()

        threading.Thread(target=accept, daemon=True).start()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    def probe(self, *args: str, check: bool = False, env: dict[str, str] | None = None,
              timeout: float = 180) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*probe_command(), *args], capture_output=True, text=True,
                              env=env or self.env, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"voipwatch-probe {' '.join(args)}: {done.stderr[-1500:]}")
        return done

    def _spool(self) -> sqlite3.Connection:
        from probe.store.spool import Spool

        path = self.home / "spool.sqlite3"
        Spool(path).close()  # its schema
        return sqlite3.connect(path, timeout=30, isolation_level=None)

    def _key_id(self) -> str:
        return str(self._key().key_id)

    def _key(self) -> Any:
        from probe.core.signing import load_key

        return load_key(self.home / "probe.key")

    # --- faults -----------------------------------------------------------------------

    def _spawn(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen([*probe_command(), *args], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, env=env or self.env)

    def _kill_after(self, proc: subprocess.Popen[str], delay: float) -> bool:
        """SIGKILL `proc` after `delay` s; whether it was still running."""
        try:
            proc.wait(delay)
            return False
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True

    def seed_records(self, count: int) -> None:
        """Signed records straight into the spool (the audit trigger sees them)."""
        from probe.store.spool import Spool
        from tests.collector.conftest import make_record

        key = self._key()
        with Spool(self.home / "spool.sqlite3") as spool:
            for _ in range(count):
                spool.add(make_record(key, "faults"))

    def kill_probe_during_pass(self) -> None:
        run = self._spawn("run", "--catalogue", str(self.catalogue), "--collector",
                          self.collector.url)
        if self._kill_after(run, self.rng.uniform(0.3, 4.0)):
            self.outcome.kills["probe_pass"] += 1

    def kill_probe_during_upload(self) -> None:
        self.seed_records(self.rng.randrange(200, 1500))
        upload = self._spawn("upload")
        if self._kill_after(upload, self.rng.uniform(0.05, 1.5)):
            self.outcome.kills["probe_upload"] += 1

    def kill_collector_during_upload(self) -> None:
        self.seed_records(self.rng.randrange(200, 1500))
        upload = self._spawn("upload")
        time.sleep(self.rng.uniform(0.05, 1.2))
        if upload.poll() is None:
            self.collector.kill()
            self.outcome.kills["collector"] += 1
            time.sleep(self.rng.uniform(0.0, 0.5))
            self.collector.restart()
        # the probe backs off, then goes on, or is killed in its turn while it waits
        if self._kill_after(upload, self.rng.uniform(0.5, 3.0)):
            self.outcome.kills["probe_upload"] += 1

    def random_kill(self) -> None:
        choice = self.rng.choice((self.kill_probe_during_pass, self.kill_probe_during_upload,
                                  self.kill_collector_during_upload))
        choice()

    def unreliable_collector(self, rounds: int = 6, fast: bool = False) -> None:
        """Uploads through a proxy that answers 500, stores then drops the answer,
        or hangs then resets, at random: `voipwatch-probe upload`, or (`fast`) the
        same uploader in this process with a short backoff."""
        with FaultyProxy(self.collector.url, self.rng) as proxy:
            for _ in range(rounds):
                self.seed_records(self.rng.randrange(100, 600))
                if fast:
                    self._upload_here(proxy.url)
                else:
                    self.probe("upload", "--collector", proxy.url)
            self.outcome.kills.update({f"proxy_{k}": v for k, v in proxy.faults.items()})

    def _upload_here(self, url: str) -> None:
        from probe.core.errors import Unreachable
        from probe.upload.uploader import Backoff, upload_and_report

        saved = os.environ.get("VOIPWATCH_HOME")
        os.environ["VOIPWATCH_HOME"] = str(self.home)
        try:
            with contextlib.suppress(Unreachable):
                upload_and_report(url, self._key(), strict=True,
                                  backoff=Backoff(attempts=4, base=0.05, cap=0.2))
        finally:
            if saved is None:
                os.environ.pop("VOIPWATCH_HOME", None)
            else:
                os.environ["VOIPWATCH_HOME"] = saved

    def full_disk_under_the_probe(self, mount: Path) -> None:
        """A pass whose spool is on a full filesystem: it may fail, it must not
        lose or duplicate what was already spooled."""
        size = sum(p.stat().st_size for p in self.home.rglob("*") if p.is_file())
        with tmpfs(mount, f"{size // 1024 + 2048}k"):
            moved = mount / "home"
            subprocess.run(["cp", "-a", str(self.home), str(moved)], check=True)
            env = {**self.env, "VOIPWATCH_HOME": str(moved)}
            filler = fill(mount)
            done = self.probe("run", "--catalogue", str(self.catalogue), "--no-upload",
                              env=env)
            self.outcome.notes.append(f"pass on a full disk: exit {done.returncode}, "
                                      f"{done.stderr.strip().splitlines()[-1:]}")
            filler.unlink()
            self.probe("upload", "--collector", self.collector.url, env=env)
            subprocess.run(["rm", "-rf", str(self.home)], check=True)
            subprocess.run(["cp", "-a", str(moved), str(self.home)], check=True)
        self.outcome.kills["probe_disk_full"] += 1

    # --- the count --------------------------------------------------------------------

    def drain(self) -> None:
        for _ in range(10):
            done = self.probe("upload", "--collector", self.collector.url)
            with self._spool() as db:
                pending = db.execute(
                    "SELECT COUNT(*) FROM records WHERE state = 'pending'").fetchone()[0]
            if pending == 0:
                return
            self.outcome.notes.append(f"drain: {pending} pending, {done.stderr[-300:]}")
            time.sleep(1)

    def count(self) -> Outcome:
        self.drain()
        with self._spool() as db:
            spooled = {row[0] for row in db.execute("SELECT id FROM audit")}
            rejected = db.execute(
                "SELECT COUNT(*) FROM records WHERE state = 'rejected'").fetchone()[0]
            waiting = {row[0] for row in db.execute("SELECT id FROM records")}
        from collector.db.engine import make_engine
        from collector.db.schema import measurements

        engine = make_engine(self.collector.db or
                             f"sqlite:///{self.collector.data_dir}/collector.sqlite3")
        try:
            with engine.connect() as conn:
                rows = list(conn.execute(sa.select(measurements.c.id).where(
                    measurements.c.key_id == self.key_id)).scalars())
        finally:
            engine.dispose()
        stored = Counter(rows)
        outcome = self.outcome
        outcome.spooled, outcome.stored = len(spooled), len(stored)
        outcome.lost = len(spooled - set(stored) - waiting)
        outcome.pending = len(waiting)
        outcome.duplicated = sum(n - 1 for n in stored.values())
        outcome.phantom = len(set(stored) - spooled)
        outcome.rejected_in_spool = rejected
        return outcome


# --- a full disk ------------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(mount: Path, size: str) -> Iterator[Path]:
    mount.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                   check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(mount: Path) -> Path:
    """Fill the filesystem to the last byte; the filler file."""
    filler = mount / "filler"
    with filler.open("wb", buffering=0) as handle:
        for size in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    handle.write(b"\0" * size)
    return filler


# --- a collector that fails ---------------------------------------------------------------


class FaultyProxy:
    """HTTP in front of the collector: per request, pass it on (half the time),
    answer 500 without passing it on, pass it on and drop the answer (stored,
    but the probe never hears so), or hang 2 s and reset."""

    def __init__(self, target: str, rng: random.Random) -> None:
        self.target = target
        self.rng = rng
        self.faults: Counter[str] = Counter()
        self.url = ""

    def __enter__(self) -> FaultyProxy:
        ready = threading.Event()
        self.loop = asyncio.new_event_loop()

        def serve() -> None:
            asyncio.set_event_loop(self.loop)
            server = self.loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", 0))
            self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
            ready.set()
            self.loop.run_forever()
            server.close()

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                fault = self.rng.choices(("pass", "error", "drop", "hang"),
                                         (0.5, 0.2, 0.2, 0.1))[0]
                self.faults[fault] += 1
                if fault == "error":
                    writer.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n"
                                 b"Connection: close\r\n\r\n")
                    await writer.drain()
                    return
                if fault == "hang":
                    await asyncio.sleep(2)
                    return
                answer = await self._forward(head, body)
                if fault == "drop":
                    return  # stored, and the answer never arrives
                writer.write(answer)
                await writer.drain()
                return
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            return
        finally:
            writer.transport.abort()

    async def _forward(self, head: bytes, body: bytes) -> bytes:
        host, port = self.target.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        lines = [line for line in head.split(b"\r\n")
                 if line and not line.lower().startswith(b"connection:")]
        writer.write(b"\r\n".join([*lines, b"Connection: close", b"", b""]) + body)
        await writer.drain()
        answer = await reader.read()
        writer.close()
        return answer
