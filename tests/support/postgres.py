"""A real PostgreSQL server for the tests and the bench: initdb in a fresh
temporary directory, listening on loopback only, on a free port; one per test
session, each test module gets its own database.

PostgreSQL refuses to run as root, so as root the server runs as the `postgres`
system user (runuser), with its directory owned by that user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path


class PostgresUnavailable(Exception):
    pass


def find_bindir() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(candidate, "pg_ctl").exists():
            return Path(candidate)
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    def __init__(self, bindir: Path | None = None) -> None:
        found = bindir or find_bindir()
        if found is None:
            raise PostgresUnavailable("PostgreSQL is not installed (pg_ctl not found; "
                                      "deploy/install-system-deps.sh installs it)")
        self.bindir = found
        self.directory = Path(tempfile.mkdtemp(prefix="vwc-pg-"))
        self.data = self.directory / "data"
        self.port = 0
        self.user: str | None = None
        if os.geteuid() == 0:
            try:
                entry = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise PostgresUnavailable("running as root, and there is no `postgres` user "
                                          "to run the server as") from exc
            self.user = "postgres"
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / argv[0]), *argv[1:]]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120,
                                cwd=self.directory)
        if check and result.returncode != 0:
            raise PostgresUnavailable(f"{argv[0]} failed: {result.stderr.strip()[-800:]}")
        return result

    def start(self) -> PostgresServer:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--encoding=UTF8", "--locale=C", "--no-sync")
        for _attempt in range(5):  # the port is free when picked; retry if it is taken since
            self.port = _free_port()
            options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                       f"-c unix_socket_directories={self.directory} -c fsync=off "
                       "-c synchronous_commit=off -c full_page_writes=off "
                       "-c max_connections=200")
            started = self._run("pg_ctl", "-D", str(self.data), "-l",
                                str(self.directory / "server.log"), "-o", options, "-w",
                                "-t", "60", "start", check=False)
            if started.returncode == 0:
                return self
            time.sleep(0.2)
        log = (self.directory / "server.log").read_text(errors="replace")[-800:]
        raise PostgresUnavailable(f"the PostgreSQL server did not start: {log}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "vwc") -> str:
        """A new empty database; its URL."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.data.exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop",
                      check=False)
        shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        yield server.start()
    finally:
        server.stop()
