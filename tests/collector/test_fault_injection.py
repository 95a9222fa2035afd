"""Exactly once under faults (issue 13), a short campaign per backend
(bench/faults.py runs 100 kills): random SIGKILLs of the probe during passes
and uploads and of the collector during uploads; a collector that answers
500s, drops answers after storing and hangs; full disks under the collector
and under the probe. Every record that entered the spool is stored once."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests.collector.conftest import BACKENDS, database_url
from tests.collector.harness import Collector
from tests.conftest import in_ci
from tests.support.faults import CAMPAIGN_ENV, Campaign, fill, tmpfs

# a short campaign: SQLite gets the most (and the unreliable collector, the full disk)
KILLS = {"sqlite": int(os.environ.get("VOIPWATCH_FAULT_KILLS", "10")), "postgresql": 4}


def need_root() -> None:
    if os.geteuid() != 0:
        if in_ci():
            pytest.fail("the full-disk cases mount a tmpfs: root needed")
        pytest.skip("the full-disk cases mount a tmpfs: root needed")


@pytest.mark.parametrize("backend", BACKENDS)
def test_random_kills_lose_and_duplicate_nothing(backend: str, request: pytest.FixtureRequest,
                                                 tmp_path: Path) -> None:
    need_root()
    collector = Collector(tmp_path / "collector", database_url(backend, request),
                          ["--control-allow-private"],
                          env=CAMPAIGN_ENV).start()
    campaign = Campaign(tmp_path, collector, seed=random.randrange(1 << 30)).start()
    try:
        kills = 0
        while kills < KILLS[backend]:
            campaign.random_kill()
            kills = sum(campaign.outcome.kills.values())
        if backend == "sqlite":
            campaign.unreliable_collector(rounds=3, fast=True)
            campaign.full_disk_under_the_probe(tmp_path / "probe-disk")
        outcome = campaign.count()
    finally:
        campaign.close()
        collector.stop()
    assert (outcome.lost, outcome.duplicated, outcome.phantom, outcome.pending) == (0, 0, 0, 0), \
        outcome
    assert outcome.rejected_in_spool == 0 and outcome.spooled > 0, outcome


def test_full_disk_under_the_collector(tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    need_root()
    from probe.core.errors import Unreachable
    from probe.upload.uploader import Backoff, upload_and_report

    with tmpfs(tmp_path / "disk", "8m") as disk:
        collector = Collector(disk / "collector", None, ["--control-allow-private"],
                              env=CAMPAIGN_ENV).start()
        campaign = Campaign(tmp_path, collector).start()
        try:
            filler = fill(disk)
            campaign.seed_records(300)
            monkeypatch.setenv("VOIPWATCH_HOME", str(campaign.home))
            with pytest.raises(Unreachable, match="300 records stay in the spool"):
                upload_and_report(collector.url, campaign._key(), strict=True,
                                  backoff=Backoff(attempts=2, base=0.05, cap=0.1))
            filler.unlink()
            outcome = campaign.count()
        finally:
            campaign.close()
            collector.stop()
    assert (outcome.lost, outcome.duplicated, outcome.stored, outcome.pending) == (0, 0, 300, 0), \
        outcome
