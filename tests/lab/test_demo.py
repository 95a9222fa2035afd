"""The Morocco 2016 replay: the story the seed tells comes out of the lab, and
the collector holds it with the phases' dates, every record marked a replay."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from deploy.lab.demo import load_seed, moments, phase_scenario
from deploy.lab.shell import run
from deploy.lab.topology import Topology
from tests.conftest import ROOT
from tests.lab.conftest import require_root, session_prefix


def test_phases_follow_the_seed() -> None:
    seed = load_seed()
    assert [p.id for p in seed.phases] == ["before", "cellular-only", "fixed-too", "restored"]
    policies = {p.id: phase_scenario(p).policy for p in seed.phases}
    assert set(policies["before"]) == set() and set(policies["restored"]) == set()
    assert set(policies["cellular-only"]) == {"cellular"}
    assert set(policies["fixed-too"]) == {"cellular", "adsl"}
    for phase in seed.phases:
        for moment in moments(phase, 3):
            assert moment.date() >= phase.start
            assert phase.end is None or moment.date() <= phase.end


def test_demo_replays_morocco_2016(tmp_path: Path) -> None:
    require_root()
    prefix = session_prefix("m")
    try:
        result = subprocess.run(
            [sys.executable, "-m", "deploy.lab", "--prefix", prefix, "--workdir", str(tmp_path),
             "demo", "--passes", "1"], cwd=ROOT, capture_output=True, text=True, timeout=400)
        assert result.returncode == 0, result.stdout + result.stderr
        lines = result.stdout.splitlines()
        rows = {line.split()[0]: line.split() for line in lines
                if line.split() and line.split()[0] in ("before", "cellular-only", "fixed-too",
                                                        "restored")}
        # phase, date, cellular calls, messages, ADSL calls, messages, as in the seed
        assert rows["before"][2:] == ["open", "open", "open", "open", "yes"]
        assert rows["cellular-only"][1:] == ["2016-01-07", "blocked", "open", "open", "open",
                                             "yes"]
        assert rows["fixed-too"][1:] == ["2016-02-22", "blocked", "open", "blocked", "open",
                                         "yes"]
        assert rows["restored"][1:] == ["2016-11-04", "open", "open", "open", "open", "yes"]
        assert "voipwatch-collector export" in result.stdout

        export = tmp_path / "export.jsonl"
        run([str(Path(sys.executable).parent / "voipwatch-collector"), "export", "--data-dir",
             str(tmp_path / "collector"), "--format", "jsonl", "--out", str(export)],
            namespace=Topology(prefix).inet_ns, timeout=120)
        exported = [json.loads(line) for line in export.read_text().splitlines()]
        records = [e.get("measurement", e) for e in exported]
        per_pass = len(records) // 8  # 4 phases x 2 probes
        assert per_pass > 0 and len(records) == 8 * per_pass
        days = {r["started_at"][:10] for r in records}
        assert days == {"2015-12-01", "2016-01-07", "2016-02-22", "2016-11-04"}
        for record in records:
            assert record["network"]["replay"] is True and record["lab_clock"]["clock"]
        calls_blocked = {(r["started_at"][:10], r["network"]["link_type"]) for r in records
                         if r["verdict"] == "blocked"}
        assert calls_blocked == {("2016-01-07", "cellular"), ("2016-02-22", "cellular"),
                                 ("2016-02-22", "adsl")}
        assert all(r["endpoint"]["role"] == "call" for r in records if r["verdict"] == "blocked")
        # a whole WebRTC call to the reference peer: its ICE checks are STUN
        direct = {(r["started_at"][:10], r["network"]["link_type"]): (r["verdict"], r["blocking"])
                  for r in records if r["endpoint"].get("label") == "direct"}
        assert direct[("2016-01-07", "cellular")] == ("blocked", "webrtc.ice")
        assert direct[("2016-01-07", "adsl")] == direct[("2016-11-04", "cellular")] == \
            ("open", None)
        verify = subprocess.run([str(Path(sys.executable).parent / "voipwatch-probe"), "verify",
                                 str(export)], capture_output=True, text=True, timeout=120)
        assert verify.returncode == 0, verify.stdout
        _dashboard_recovers_the_seed(tmp_path, result.stdout)
    finally:
        Topology(prefix).down()


def _dashboard_recovers_the_seed(workdir: Path, output: str) -> None:
    """The lab's collector data, served outside the lab as the demo says: the
    detector finds the seed's dates, within a day, from the replay's one pass per
    phase; messaging never changes."""
    from tests.collector.harness import Collector

    assert "/?from=2015-12-01&to=2016-11-11" in output
    with Collector(workdir / "collector", None, ["--no-control"]) as served, \
            served.client() as client:
        items = client.get("/api/v1/changes").json()["items"]
        found = {(i["service"], i["role"], i["link_type"], i["kind"]): i["at"] for i in items}
        for service in ("lumen", "parla"):
            assert found.pop((service, "call", "cellular", "start")) == "2016-01-07"
            assert found.pop((service, "call", "adsl", "start")) == "2016-02-22"
            assert found.pop((service, "call", "cellular", "end")) == "2016-11-04"
            assert found.pop((service, "call", "adsl", "end")) == "2016-11-04"
        assert found == {}  # nothing else: no change in messaging
        assert client.get("/?from=2015-12-01&to=2016-11-11").status_code == 200
