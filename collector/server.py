"""Running the app under uvicorn: binds the socket itself (a clear error when the
port is taken; `--port 0` picks a free one), logs the address it listens on,
and runs one process or several sharing that socket."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from collector.settings import ENV_PREFIX, Settings
from probe.core.errors import UserError

log = logging.getLogger("collector")


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # accepted connections inherit it: a response written in two parts (head, body)
    # must not wait for a delayed ACK (40 ms per request on a kept-alive connection)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(settings: Settings, flags: dict[str, Any]) -> None:
    import uvicorn

    sock = bind(settings.host, settings.port)
    common: dict[str, Any] = dict(
        log_config=None, access_log=False, server_header=False,
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=settings.forwarded_allow_ips or "",
        timeout_graceful_shutdown=10, lifespan="on",
        # connections per process, idle ones included: each may hold a request
        # body (up to max_request_bytes, or max_body_bytes signed) until the
        # gate's body deadline (collector/gate.py); uvicorn answers 503 beyond.
        # An idle kept-alive connection is closed after 5 s (uvicorn's default)
        limit_concurrency=settings.max_connections, timeout_keep_alive=5)
    log.info("listening", extra={"event": "listening", "url": url_of(sock),
                                 "database": settings.database_url.split("://")[0]})
    if settings.workers == 1:
        from collector.app import create_app
        from collector.services import Services

        services = Services.build(settings)
        try:
            server = uvicorn.Server(uvicorn.Config(create_app(services=services), **common))
            server.run(sockets=[sock])
        finally:
            services.close()
        return
    # several processes: each builds the app from the same settings, passed on
    # as environment variables; the media service (peer, reflector) is one more
    # process, unless it runs elsewhere (media_url)
    media_sock = None
    if not settings.media_url:
        media_sock = bind("127.0.0.1", 0)
        flags = {**flags, "media_url": url_of(media_sock)}
    for name, value in flags.items():
        if value is not None:
            os.environ[f"{ENV_PREFIX}{name.upper()}"] = str(value).lower() \
                if isinstance(value, bool) else str(value)
    media = None
    if media_sock is not None:
        from collector.media import MediaChild

        media = MediaChild(media_sock).start()
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config("collector.app:app_from_environment", factory=True,
                            workers=settings.workers, **common)
    try:
        Multiprocess(config, sockets=[sock]).run()
    finally:
        if media is not None:
            media.stop()
