"""`make demo`: replay the Moroccan VoIP block of 2016 in the lab.

The phases come from seeds/morocco-2016.yaml (what was blocked on which link
type, from when to when). A cellular and an ADSL probe measure the lab
catalogue while the router's policy moves through the phases; each pass runs
under `VOIPWATCH_LAB_CLOCK` set to a date inside its phase, so the records
carry the phase's dates (and say they are a replay: `network.replay`,
`lab_clock`) and upload to the lab's collector, which is started without an
age limit for records. "Calls blocked" is the block the reports describe:
STUN in any UDP datagram dropped, and nothing reaches the call servers;
messaging stays open.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from rich.console import Console

from deploy.lab import addresses
from deploy.lab.accuracy import run_probe
from deploy.lab.lab import ROOT, Lab
from deploy.lab.scenario import Scenario
from deploy.lab.shell import LabError, UsageError
from probe.core.record import LinkType, Role
from probe.core.summary import summarise

SEED = ROOT / "seeds" / "morocco-2016.yaml"
LINKS = (LinkType.CELLULAR, LinkType.ADSL)
HOUR = 10  # measurements at 10:00 UTC on their day
COLLECTOR_ENV = {"VOIPWATCH_COLLECTOR_MAX_RECORD_AGE_DAYS": "0"}  # 0: accept records of 2016


class Phase(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    start: dt.date
    end: dt.date | None = None
    description: str
    blocked: dict[LinkType, list[Role]]


class Seed(BaseModel):
    model_config = ConfigDict(extra="allow")
    country: str
    phases: list[Phase]


def load_seed(path: Path = SEED) -> Seed:
    try:
        return Seed.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise LabError(f"cannot read the replay's timeline {path}: {exc}") from exc


def moments(phase: Phase, passes: int) -> list[dt.datetime]:
    """`passes` dates spread over the phase (a week for the open-ended last one)."""
    end = phase.end or phase.start + dt.timedelta(days=7)
    span = (end - phase.start).days
    days = [phase.start + dt.timedelta(days=span * i // max(passes, 1)) for i in range(passes)]
    return [dt.datetime(d.year, d.month, d.day, HOUR, tzinfo=dt.UTC) for d in days]


def phase_scenario(phase: Phase) -> Scenario:
    """The router's policy for a phase: calls blocked where the seed says so."""
    policy: dict[str, Any] = {}
    for link, roles in phase.blocked.items():
        if link in LINKS and Role.CALL in roles:
            policy[str(link)] = [{"action": "drop", "payload": "stun"},
                                 {"action": "drop", "role": "call"}]
    return Scenario.model_validate({"name": f"morocco-{phase.id}",
                                    "description": phase.description,
                                    "links": [str(link) for link in LINKS], "policy": policy})


def _stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


async def _pass(lab: Lab, moment: dt.datetime) -> dict[LinkType, list[dict[str, Any]]]:
    env = {"VOIPWATCH_LAB_CLOCK": _stamp(moment)}
    results = await asyncio.gather(*(run_probe(lab, link, upload=True, env=env)
                                     for link in LINKS))
    return dict(zip(LINKS, results, strict=True))


def _calls(records: list[dict[str, Any]]) -> str:
    """What a user would say about calls: blocked if any service's calls are."""
    roles = summarise([r for r in records if r["endpoint"]["check"] != "dns"])
    verdicts = {v["call"] for v in roles.values() if "call" in v}
    return "blocked" if "blocked" in verdicts else "open" if verdicts == {"open"} else \
        "/".join(sorted(verdicts))


def _messaging(records: list[dict[str, Any]]) -> str:
    verdicts = {v["messaging"] for v in summarise(records).values() if "messaging" in v}
    return "open" if verdicts == {"open"} else "/".join(sorted(verdicts))


def demo_lab(prefix: str, workdir: Path | None) -> Lab:
    return Lab(prefix, workdir, links=LINKS, collector_env=dict(COLLECTOR_ENV))


def run_demo(lab: Lab, passes: int = 2, console: Console | None = None) -> int:
    """Replay every phase of the seed; 0 when each pass shows what the seed says
    and every record reached the collector."""
    console = console or Console()

    def say(text: str) -> None:
        console.print(text, highlight=False, soft_wrap=True)

    if passes < 1:
        raise UsageError("--passes must be at least 1")
    seed = load_seed()
    say(f"building the lab {lab.prefix} (cellular and ADSL probes, a collector without a "
        "record age limit)...")
    lab.up()
    say(f"{'phase':<15}{'as of':<12}{'cellular calls':<16}{'messages':<10}"
        f"{'ADSL calls':<12}{'messages':<10}as in the seed")
    wrong = total = 0
    for phase in seed.phases:
        lab.apply(phase_scenario(phase))
        for moment in moments(phase, passes):
            records = asyncio.run(_pass(lab, moment))
            total += sum(len(r) for r in records.values())
            cells, agrees = [], True
            for link in LINKS:
                calls, messaging = _calls(records[link]), _messaging(records[link])
                blocked = Role.CALL in phase.blocked.get(link, [])
                agrees &= calls == ("blocked" if blocked else "open") and messaging == "open"
                cells.append((calls, messaging))
            wrong += not agrees
            (cell_calls, cell_msgs), (adsl_calls, adsl_msgs) = cells
            say(f"{phase.id:<15}{moment:%Y-%m-%d}  {cell_calls:<16}{cell_msgs:<10}"
                f"{adsl_calls:<12}{adsl_msgs:<10}{'yes' if agrees else '[bold red]NO[/]'}")
    left = _left_in_spools(lab)
    if left:
        say(f"[bold red]{left} records did not reach the collector[/] (see "
            f"`voipwatch-probe status` with VOIPWATCH_HOME={lab.dir / 'probes'}/<link>)")
    _where_to_look(lab, say, total - left)
    return 0 if wrong == 0 and left == 0 else 1


def _left_in_spools(lab: Lab) -> int:
    """Records still pending or rejected in the probes' spools (0: all uploaded)."""
    from probe.store.spool import Spool

    left = 0
    for link in LINKS:
        with Spool(lab.probe_home(link) / "spool.sqlite3") as spool:
            counts = spool.counts()
        left += counts["pending"] + counts["rejected"]
    return left


DASHBOARD_PORT = 8472  # the lab's data served to this machine's browser


def dashboard_period(seed: Seed) -> str:
    """`from=...&to=...` covering every phase of the replay (the last, open-ended
    one for the week its passes are spread over)."""
    first = min(p.start for p in seed.phases)
    last = max((p.end or p.start + dt.timedelta(days=7)) for p in seed.phases)
    return f"from={first.isoformat()}&to={last.isoformat()}"


def _where_to_look(lab: Lab, say: Callable[[str], None], uploaded: int) -> None:
    inet = lab.topology.inet_ns
    url = addresses.collector_url()
    bin_dir = ROOT / ".venv" / "bin"
    out = Path.cwd() / "morocco-2016-replay.jsonl"
    period = dashboard_period(load_seed())
    say(f"\n{uploaded} signed records in the lab's collector, dated in 2015-2016 and marked as "
        "a replay (network.replay, lab_clock). Where to look:")
    say(f"  the dashboard, from this machine's browser: serve the lab's data outside the lab\n"
        f"    {bin_dir}/voipwatch-collector serve --data-dir {lab.dir / 'collector'} "
        f"--port {DASHBOARD_PORT} --no-control &\n"
        f"    http://127.0.0.1:{DASHBOARD_PORT}/?{period}   (changes: "
        f"http://127.0.0.1:{DASHBOARD_PORT}/changes, fr: &lang=fr, ar: &lang=ar)")
    say(f"  dashboard (inside the lab): {url}?{period}")
    say(f"  ip netns exec {inet} curl -s '{url}api/v1/changes?link_type=cellular'")
    say(f"  ip netns exec {inet} curl -s '{url}api/v1/measurements?service=lumen"
        "&link_type=cellular&since=2016-01-01T00:00:00Z'")
    say(f"  ip netns exec {inet} {bin_dir}/voipwatch-collector export --data-dir "
        f"{lab.dir / 'collector'} --format jsonl --out {out}")
    say(f"  {bin_dir}/voipwatch-probe verify {out}")
    say(f"  python -m deploy.lab --prefix {lab.prefix} down    # when done")
