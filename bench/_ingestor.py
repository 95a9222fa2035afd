"""A collector's own ingest in this process, on a store of its settings, with
bench/generate.py's 8 probe keys registered: for benches that need a store of
real signed records (bench/_ingest_stages.py, bench/verify_export.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.generate import probe_keys
from collector import ingest
from collector.db.migrate import upgrade
from collector.geoip import Enrichment
from collector.services import Services
from collector.settings import load_settings


@contextmanager
def ingestor(settings: dict[str, Any]) -> Iterator[tuple[ingest.Ingestor, Enrichment]]:
    """(the Ingestor, the loopback's enrichment) on `settings` (load_settings's
    overrides; no daily quota)."""
    loaded = load_settings({"ingest_quota_per_day": 10**9, **settings})
    services = Services.build(loaded)
    try:
        upgrade(services.engine)
        for key in probe_keys(8):
            services.keys.register(key.public_b64, None, require_token=False)
        yield (ingest.Ingestor(loaded, services.keys, services.store, services.identity,
                               services.log, services.tally),
               services.enricher.lookup("127.0.0.1"))
    finally:
        services.close()
