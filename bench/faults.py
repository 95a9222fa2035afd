"""Exactly once under faults (issue 13), the long run: on SQLite and on
PostgreSQL, 100 random SIGKILLs (BENCH_FAULT_KILLS) of the probe during passes
and uploads and of the collector during uploads, then a collector answering
500s, dropping answers after storing and hanging, and full disks under the
probe and (SQLite) under the collector. Prints the kills, the records that
entered the spool, and lost / duplicated / phantom records (all must be 0).
Needs root (tmpfs mounts) and PostgreSQL (deploy/install-system-deps.sh)."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.collector.harness import Collector
from tests.support.faults import CAMPAIGN_ENV, Campaign, Outcome, fill, tmpfs
from tests.support.postgres import postgres_server

KILLS = int(os.environ.get("BENCH_FAULT_KILLS", "100"))


def campaign(workdir: Path, db: str | None) -> Outcome:
    collector = Collector(workdir / "collector", db, ["--control-allow-private"],
                          env=CAMPAIGN_ENV).start()
    run = Campaign(workdir, collector, seed=int(time.time())).start()
    start = time.monotonic()
    try:
        while sum(run.outcome.kills.values()) < KILLS:
            run.random_kill()
        run.unreliable_collector(rounds=6)
        run.full_disk_under_the_probe(workdir / "probe-disk")
        outcome = run.count()
    finally:
        run.close()
        collector.stop()
    outcome.seconds = time.monotonic() - start
    return outcome


def collector_disk(workdir: Path) -> Outcome:
    with tmpfs(workdir / "disk", "8m") as disk:
        collector = Collector(disk / "collector", None, ["--control-allow-private"],
                          env=CAMPAIGN_ENV).start()
        run = Campaign(workdir, collector).start()
        try:
            filler = fill(disk)
            run.seed_records(300)
            run.probe("upload")
            filler.unlink()
            outcome = run.count()
            outcome.kills["collector_disk_full"] += 1
        finally:
            run.close()
            collector.stop()
    return outcome


def show(name: str, outcome: Outcome) -> bool:
    kills = ", ".join(f"{k} {v}" for k, v in sorted(outcome.kills.items()))
    print(f"{name}: {kills}")
    print(f"  records spooled {outcome.spooled:,}, stored {outcome.stored:,}: lost "
          f"{outcome.lost}, duplicated {outcome.duplicated}, phantom {outcome.phantom}, still "
          f"pending {outcome.pending}, rejected in the spool {outcome.rejected_in_spool}"
          + (f"; {outcome.seconds:.0f} s" if outcome.seconds else ""))
    for note in outcome.notes[:3]:
        print(f"  {note}")
    return (outcome.lost, outcome.duplicated, outcome.phantom, outcome.pending) == (0, 0, 0, 0)


def main() -> int:
    if os.geteuid() != 0:
        print("bench/faults.py needs root (tmpfs mounts for the full disks)")
        return 1
    ok = True
    with tempfile.TemporaryDirectory(prefix="vw-faults-") as tmp:
        ok &= show(f"SQLite, {KILLS} kills", campaign(Path(tmp) / "sqlite", None))
        with postgres_server() as server:
            ok &= show(f"PostgreSQL, {KILLS} kills",
                       campaign(Path(tmp) / "pg", server.create_database()))
        ok &= show("SQLite on a full disk", collector_disk(Path(tmp) / "disk"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
