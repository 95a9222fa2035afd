"""Builds the FastAPI application. Routes live in `collector/routers/`, one
module per area, listed in `collector.routers.ROUTERS`."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from collector import __version__, errors, gc_tuning
from collector.dashboard import alerts
from collector.gate import Gate
from collector.middleware import AccessLog, SecurityHeaders
from collector.routers import ROUTERS
from collector.services import Services
from collector.settings import Settings, load_settings


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    """The app; its services (database, enrichment...) are built at startup,
    after the schema is migrated, unless `services` is given."""
    settings = settings or (services.settings if services else load_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        built = services is None
        current = services or Services.build(settings)
        if built:
            from collector.db.migrate import upgrade

            upgrade(current.engine)
        app.state.services = current
        heads = None
        if current.settings.transparency_log:
            from collector.translog import keep_signing

            await run_in_threadpool(current.log.catch_up)
            heads = asyncio.ensure_future(
                keep_signing(current.log, current.settings.log_head_interval_seconds))
        whoami = None
        if current.settings.whoami_zone and current.settings.whoami_listen:
            from collector import whoami as whoami_dns
            from collector.settings import parse_host_port

            host, port = parse_host_port(current.settings.whoami_listen)
            whoami = await whoami_dns.start(current.settings.whoami_zone, host, port)
        # the dashboard's change detection and webhooks (collector/dashboard/alerts.py)
        background = asyncio.create_task(alerts.background(
            current.engine, settings.public_url, settings.dashboard_refresh_seconds,
            current.identity))
        gc_tuning.tune()
        try:
            yield
        finally:
            background.cancel()
            if whoami is not None:
                whoami.close()
            if heads is not None:
                heads.cancel()
            if built:
                current.close()

    app = FastAPI(
        title="voipwatch collector", version=__version__, lifespan=lifespan,
        docs_url=None, redoc_url=None,  # /docs is served locally (collector/routers/assets.py)
        description="Registration, signed ingest, the test helper and exports of "
                    "voipwatch measurements (docs/collector.md).",
    )
    errors.install(app)
    for name in ROUTERS:
        module = importlib.import_module(f"collector.routers.{name}")
        app.include_router(module.router)
    if settings.media_url:  # the peer and the reflector live in the media service
        from collector.media_proxy import MediaProxy

        app.add_middleware(MediaProxy, media_url=settings.media_url)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(Gate, settings=settings)
    app.add_middleware(AccessLog, keep_ip=settings.keep_ip)
    return app


def app_from_environment() -> FastAPI:
    """Factory for `uvicorn --factory collector.app:app_from_environment`
    (settings from the environment and the TOML file)."""
    return create_app(load_settings())
