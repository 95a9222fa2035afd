"""Every scenario on the session's lab: the probe's verdicts and blocking
methods are the expected ones, and never a `blocked` where nothing was."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from deploy.lab.accuracy import ScenarioVerdict, run_scenario
from deploy.lab.scenario import SCENARIOS, load_scenario


def describe(o: ScenarioVerdict) -> str:
    return (f"{o.link} {o.service} {o.check} {o.target}: expected {o.expected}, got "
            f"{o.observed} (rule {o.rule}; {o.failure} in phase {o.phase})"
            + "".join(f"; {d}" for d in o.details))


def scenario_params() -> list[object]:
    return [pytest.param(path, id=path.stem) for path in sorted(SCENARIOS.glob("*.yaml"))]


@pytest.mark.parametrize("path", scenario_params())
def test_scenario_verdicts(lab: Any, path: Path) -> None:
    scenario = load_scenario(path)
    outcomes = asyncio.run(run_scenario(lab, scenario))
    assert outcomes
    false_positives = [o for o in outcomes if o.false_positive]
    assert not false_positives, "\n".join(f"FALSE BLOCKED: {describe(o)}" for o in false_positives)
    mismatches = [o for o in outcomes if not o.ok]
    assert not mismatches, "\n".join(describe(o) for o in mismatches)
    # every probe host the scenario names measured every endpoint
    links = {o.link for o in outcomes}
    assert links == {str(link) for link in scenario.links}
