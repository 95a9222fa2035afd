"""Run scenarios and compare the probe's verdicts with the expected ones.

For each scenario: install its policy, run a probe on every link type it
names (concurrently, one process per probe host), and match every record
with the scenario's expectations. The result is a confusion matrix of
expected vs observed `verdict/blocking` labels; any off-diagonal cell is a
mismatch, and an observed `blocked`/`throttled` where none was expected is a
false positive, the error this project must never make.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from rich.console import Console

from deploy.lab.lab import Lab
from deploy.lab.scenario import Scenario
from deploy.lab.shell import LabError
from probe.core.record import LinkType

PROBE_TIMEOUT = 180.0
NAMED = ("blocked", "throttled")


@dataclass(frozen=True)
class ScenarioVerdict:
    scenario: str
    link: str
    service: str
    role: str
    check: str
    target: str
    expected: str
    observed: str
    rule: str
    suspected: str | None
    failure: str | None = None  # what the probe saw, and where (for a mismatch's reader)
    phase: str | None = None
    # the case's evidence expectations the record did not meet (hop, media, layer...)
    details: tuple[str, ...] = ()
    evidence_checked: bool = False  # its case had evidence expectations

    @property
    def ok(self) -> bool:
        return self.expected == self.observed and not self.details

    @property
    def false_positive(self) -> bool:
        return self.observed.split("/")[0] in NAMED and self.expected.split("/")[0] not in NAMED


def label(verdict: str, blocking: str | None) -> str:
    return f"{verdict}/{blocking}" if blocking else verdict


async def run_probe(lab: Lab, link: LinkType, *, timeout: float | None = None,
                    upload: bool = False, env: dict[str, str] | None = None
                    ) -> list[dict[str, Any]]:
    """One `voipwatch-probe run` in the link's namespace; its records."""
    process = await asyncio.create_subprocess_exec(
        *lab.run_argv(link, timeout=timeout, upload=upload), env=lab.probe_env(link, env),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(process.communicate(), PROBE_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise LabError(f"the {link} probe did not finish within {PROBE_TIMEOUT:g} s") from None
    if process.returncode != 0:
        detail = err.decode(errors="replace").strip().splitlines()
        raise LabError(f"the {link} probe failed (exit status {process.returncode}): "
                       f"{detail[-1] if detail else 'no message'}")
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


def compare(scenario: Scenario, link: LinkType,
            records: list[dict[str, Any]]) -> list[ScenarioVerdict]:
    outcomes = []
    for record in records:
        expected = scenario.expect.expected(str(link), record)
        endpoint = record["endpoint"]
        outcomes.append(ScenarioVerdict(
            scenario=scenario.name, link=str(link), service=record["service"],
            role=endpoint["role"], check=endpoint["check"],
            target=_target(endpoint),
            expected=label(str(expected.verdict),
                           str(expected.blocking) if expected.blocking else None),
            observed=label(record["verdict"], record.get("blocking")),
            rule=record["evidence"].get("rule", ""),
            suspected=record["evidence"].get("suspected"),
            failure=record["evidence"].get("failure"),
            phase=record["evidence"].get("phase"),
            details=tuple(expected.evidence_mismatches(record)),
            evidence_checked=bool(expected.evidence),
        ))
    return outcomes


def _target(endpoint: dict[str, Any]) -> str:
    # a label tells apart endpoints that share host, port and transport (webrtc variants)
    label = f" {endpoint['label']}" if endpoint.get("label") else ""
    return f"{endpoint['host']}:{endpoint['port']}/{endpoint['transport']}{label}"


async def run_scenario(lab: Lab, scenario: Scenario) -> list[ScenarioVerdict]:
    lab.apply(scenario)
    links = [link for link in scenario.links if link in lab.links]
    results = await asyncio.gather(*(run_probe(lab, link, timeout=scenario.timeout)
                                     for link in links))
    expected_count = sum(len(s.endpoints) for s in lab.catalogue.services)
    outcomes = []
    for link, records in zip(links, results, strict=True):
        if len(records) != expected_count:
            raise LabError(f"scenario {scenario.name}: the {link} probe wrote {len(records)} "
                           f"records for {expected_count} endpoints")
        outcomes.extend(compare(scenario, link, records))
    return outcomes


def run_all(lab: Lab, scenarios: list[Scenario], console: Console | None = None
            ) -> list[ScenarioVerdict]:
    console = console or Console(stderr=True)
    outcomes: list[ScenarioVerdict] = []
    for scenario in scenarios:
        start = time.monotonic()
        found = asyncio.run(run_scenario(lab, scenario))
        bad = sum(not o.ok for o in found)
        console.print(f"{scenario.name}: {len(found)} records, "
                      f"{'all as expected' if not bad else f'{bad} MISMATCHES'} "
                      f"({time.monotonic() - start:.1f} s)")
        outcomes.extend(found)
    return outcomes


def confusion(outcomes: list[ScenarioVerdict]) -> Counter[tuple[str, str]]:
    return Counter((o.expected, o.observed) for o in outcomes)


def render(outcomes: list[ScenarioVerdict], console: Console) -> None:
    """The confusion matrix (columns numbered, with a legend, so it fits a
    terminal), the mismatches one per line, and the false-positive count."""

    def say(text: str) -> None:  # whole lines, never wrapped: a table must stay a table
        console.print(text, highlight=False, soft_wrap=True)

    matrix = confusion(outcomes)
    observed = sorted({o for _, o in matrix})
    expected = sorted({e for e, _ in matrix})
    width = max(len(label) for label in observed + expected) + 2
    say("confusion matrix: expected verdict/blocking (rows) vs observed (columns)")
    for number, label in enumerate(observed, start=1):
        say(f"  [{number}] {label}")
    say(" " * width + "".join(f"{f'[{n}]':>5}" for n in range(1, len(observed) + 1)))
    for row in expected:
        cells = []
        for column in observed:
            count = matrix.get((row, column), 0)
            style = "green" if row == column else "bold red"
            cells.append(f"[{style}]{count:>5}[/]" if count else f"{'.':>5}")
        say(f"{row:<{width}}" + "".join(cells))
    mismatches = [o for o in outcomes if not o.ok]
    if mismatches:
        say("[bold red]mismatches[/] (scenario link service check target: expected -> "
            "observed, by rule; what the probe saw)")
    for o in mismatches:
        say(f"  {o.scenario} {o.link} {o.service} {o.check} {o.target}: {o.expected} -> "
            f"{o.observed}, by {o.rule}; {o.failure} in phase {o.phase}, suspected "
            f"{o.suspected}" + "".join(f"; {d}" for d in o.details))
    checked = [o for o in outcomes if o.evidence_checked]
    if checked:
        say(f"evidence expectations (hop, media timeline, layer beyond DNS, injection): "
            f"{sum(not o.details for o in checked)} of {len(checked)} met")
    false_positives = sum(o.false_positive for o in outcomes)
    say(f"{len(outcomes)} records, {len(outcomes) - len(mismatches)} as expected, "
        f"{len(mismatches)} mismatches; false positives (blocked or throttled where nothing "
        f"was): {false_positives}")


def to_json(outcomes: list[ScenarioVerdict]) -> str:
    return json.dumps([asdict(o) | {"ok": o.ok, "false_positive": o.false_positive}
                       for o in outcomes], indent=1)
