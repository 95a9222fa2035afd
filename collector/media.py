"""The media service: the WebRTC reference peer and the throttling reflector in
one process, since both keep per-session state in memory (a reflector session
is opened, read and closed by three requests that must reach the same
process) and own the UDP sockets their sessions use.

How it runs (docs/collector.md, "Media service"):
- `serve` with one worker: in that worker, as before;
- `serve --workers N` (N > 1): `serve` starts `voipwatch-collector media` as a
  child on a loopback port, restarts it if it dies, and the API workers
  forward media requests to it (collector/media_proxy.py);
- `voipwatch-collector media` on its own (another unit, container or machine):
  give the API `media_url`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
from typing import Any

from fastapi import FastAPI

from collector import __version__, errors
from collector.gate import Gate
from collector.media_proxy import TrustedForwarder
from collector.middleware import AccessLog
from collector.settings import Settings

log = logging.getLogger("collector.media")

ROUTERS = ("health", "webrtc", "reflector")
DEFAULT_PORT = 8471


def media_settings(settings: Settings) -> Settings:
    """The media service needs the key store, not the enrichment databases."""
    return settings.model_copy(update={"geoip_builtin": False, "geoip_asn": None,
                                       "geoip_country": None})


def create_media_app(settings: Settings) -> FastAPI:
    import importlib
    from collections.abc import AsyncIterator
    from contextlib import asynccontextmanager

    from collector.services import Services

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services.build(media_settings(settings))
        app.state.services = services
        try:
            yield
        finally:
            services.close()

    app = FastAPI(title="voipwatch collector: media service", version=__version__,
                  lifespan=lifespan, description="The WebRTC reference peer and the "
                  "throttling reflector (docs/collector.md).")
    errors.install(app)
    for name in ROUTERS:
        app.include_router(importlib.import_module(f"collector.routers.{name}").router)
    app.add_middleware(TrustedForwarder, trusted=settings.media_proxy_set)
    app.add_middleware(Gate, settings=settings)
    app.add_middleware(AccessLog, keep_ip=settings.keep_ip)
    return app


def run(settings: Settings, host: str, port: int, fd: int | None = None) -> None:
    """Serve the media app in this process until SIGTERM or SIGINT."""
    import socket

    import uvicorn

    from collector.server import bind, url_of

    sock = socket.socket(fileno=fd) if fd is not None else bind(host, port)
    if fd is not None:
        _exit_with_parent()
    log.info("media service listening", extra={"event": "media_listening",
                                               "url": url_of(sock)})
    config = uvicorn.Config(create_media_app(settings), log_config=None, access_log=False,
                            server_header=False, timeout_graceful_shutdown=5, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


def _exit_with_parent() -> None:
    """A child of `serve` ends when `serve` is gone, even killed outright."""
    import signal
    import time

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class MediaChild:
    """`voipwatch-collector media` as a child of `serve`, on a socket `serve`
    bound (so the workers know its address before it starts), restarted when it
    dies, stopped with `serve`."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._supervise, name="media", daemon=True)

    def _start(self) -> subprocess.Popen[bytes]:
        fd = self.sock.fileno()
        return subprocess.Popen([sys.executable, "-m", "collector", "media", "--fd", str(fd)],
                                pass_fds=(fd,), env=os.environ.copy())

    def start(self) -> MediaChild:
        self.proc = self._start()
        self.thread.start()
        return self

    def _supervise(self) -> None:
        while not self.stopping.is_set():
            assert self.proc is not None
            code = self.proc.wait()
            if self.stopping.is_set():
                return
            log.error("media service exited; restarting it", extra={
                "event": "media_restart", "exit_status": code})
            if self.stopping.wait(1.0):
                return
            self.proc = self._start()

    def stop(self) -> None:
        self.stopping.set()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(OSError):
            self.sock.close()
