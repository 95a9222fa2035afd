"""What the routers share: settings, database, key store, enrichment, the test
helper. Built once per process by `collector.app`; routers reach it through
the `ServicesDep` dependency."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.engine import Engine

from collector.keys import KeyStore
from collector.settings import Settings
from collector.tally import Tally

if TYPE_CHECKING:
    from collector.control import ControlRunner
    from collector.geoip import Enricher
    from collector.identity import CollectorKey
    from collector.store import MeasurementStore
    from collector.translog import TransLog


@dataclass
class Services:
    settings: Settings
    engine: Engine
    keys: KeyStore
    store: MeasurementStore
    enricher: Enricher
    control: ControlRunner
    identity: CollectorKey
    log: TransLog  # read side always; appends only with settings.transparency_log
    catalogue: Any = None  # the operator's catalogue (setting `catalogue`), loaded at start
    tally: Tally = field(default_factory=Tally)  # rejections not yet written
    # room for other areas (webrtc peer, reflector) to keep per-process state
    extras: dict[str, Any] = field(default_factory=dict)
    checkpointer: Any = None  # SQLite's WAL, in the background (collector/db/checkpoint.py)

    @classmethod
    def build(cls, settings: Settings) -> Services:
        from collector.control import ControlRunner
        from collector.db.engine import make_engine
        from collector.geoip import Enricher
        from collector.identity import load_or_create
        from collector.store import MeasurementStore
        from collector.translog import TransLog

        catalogue = None
        if settings.catalogue is not None:
            from probe.catalogue import load_catalogue

            catalogue = load_catalogue(settings.catalogue)  # a UserError names the problem
        from collector.db.checkpoint import Checkpointer

        engine = make_engine(settings.database_url, serving=True)
        identity = load_or_create(settings.data_dir)
        return cls(settings=settings, engine=engine, keys=KeyStore(engine),
                   store=MeasurementStore(engine), enricher=Enricher.from_settings(settings),
                   control=ControlRunner(settings, engine, catalogue), catalogue=catalogue,
                   identity=identity, log=TransLog(engine, identity),
                   checkpointer=Checkpointer(engine).start())

    def close(self) -> None:
        counts = self.tally.drain()
        if counts:
            with contextlib.suppress(Exception):  # the database is gone: only counts lost
                self.store.insert([], counts)
        self.enricher.close()
        if self.checkpointer is not None:
            self.checkpointer.stop()
        self.engine.dispose()


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
