"""Change-point detection (collector/dashboard/changes.py): the seed's dates
from the replay's sparse schedule, and false alarms and delay on synthetic
series with noise, gaps and few probes, printed as figures."""

from __future__ import annotations

import random
from datetime import date, timedelta

import pytest

from collector.dashboard.changes import Day, detect
from deploy.lab.demo import load_seed, moments

START = date(2020, 1, 1)


def _phase_series(link: str, passes: int) -> list[Day]:
    days = []
    for phase in load_seed().phases:
        blocked = "call" in [str(r) for r in phase.blocked.get(link, [])]  # type: ignore[call-overload]
        for moment in moments(phase, passes):
            days.append(Day(moment.date(), 0 if blocked else 1, 1 if blocked else 0))
    return days


@pytest.mark.parametrize("passes", [1, 2, 3])
def test_the_seeds_dates_from_the_replays_schedule(passes: int) -> None:
    """One probe per link type, `passes` days per phase (the demo makes 2, its lab
    test 1): starts and ends exactly on the seed's days."""
    cellular = [(c.kind, c.at.isoformat()) for c in detect(_phase_series("cellular", passes))]
    adsl = [(c.kind, c.at.isoformat()) for c in detect(_phase_series("adsl", passes))]
    assert cellular == [("start", "2016-01-07"), ("end", "2016-11-04")]
    assert adsl == [("start", "2016-02-22"), ("end", "2016-11-04")]


def test_messaging_that_never_changes_has_no_change() -> None:
    days = [Day(START + timedelta(days=i), 1, 0) for i in range(0, 300, 3)]
    assert detect(days) == []


def _synthetic(rng: random.Random, probes: int, noise: float, missing: float,
               block: tuple[int, int] | None, length: int = 240) -> list[Day]:
    """Daily units from `probes` probes, each missing a day with probability
    `missing` and wrong with probability `noise`; blocked on days [a, b)."""
    days = []
    for i in range(length):
        truth = block is not None and block[0] <= i < block[1]
        units = [truth != (rng.random() < noise) for _ in range(probes) if rng.random() >= missing]
        if units:
            days.append(Day(START + timedelta(days=i), units.count(False), units.count(True)))
    return days


CASES = [  # probes, noise, missing days
    (1, 0.05, 0.3), (1, 0.10, 0.5), (3, 0.10, 0.3), (3, 0.20, 0.3), (5, 0.20, 0.5),
    (10, 0.25, 0.2)]


def test_false_alarms_and_delay_on_noisy_series_with_gaps() -> None:
    """Per case, 40 series without any change and 40 with a block from day 80
    to day 160: false alarms (a change reported further than 7 days from a
    true one, or any on the quiet series) per series-year, delay of each found
    start and end (first reported day minus the true one), misses."""
    rng = random.Random(15)
    print("\nprobes noise missing | false alarms/series-year | found | delay start/end "
          "median (max) days | conf. median")
    for probes, noise, missing in CASES:
        false = found = total = 0
        delays: list[int] = []
        confidences: list[float] = []
        for trial in range(80):
            block = (80, 160) if trial % 2 else None
            series = _synthetic(rng, probes, noise, missing, block)
            truth = [] if block is None else [("start", block[0]), ("end", block[1])]
            total += len(truth)
            for change in detect(series):
                day = (change.at - START).days
                near = [t for kind, t in truth if kind == change.kind and abs(day - t) <= 7]
                if near:
                    found += 1
                    delays.append(day - near[0])
                    confidences.append(change.confidence)
                else:
                    false += 1
        rate = false / (80 * 240 / 365)
        delays.sort()
        confidences.sort()
        median = delays[len(delays) // 2] if delays else None
        print(f"{probes:>6} {noise:5.2f} {missing:7.2f} | {rate:24.3f} | {found:3}/{total} | "
              f"{median} ({max(delays) if delays else None}) | "
              f"{confidences[len(confidences) // 2] if confidences else 0:.2f}")
        assert rate <= 0.2, "more than one false alarm per five series-years"
        assert found >= 0.9 * total
        assert delays and max(delays) <= 7 and median is not None and median <= 3


def test_one_odd_day_among_daily_measurements_is_not_a_change() -> None:
    days = [Day(START + timedelta(days=i), 0 if i == 50 else 1, 1 if i == 50 else 0)
            for i in range(100)]
    assert detect(days) == []


def test_several_probes_agreeing_on_one_day_are_enough() -> None:
    days = [Day(START + timedelta(days=i), 3, 0) for i in range(60)]
    days.append(Day(START + timedelta(days=60), 0, 3))
    [change] = detect(days)
    assert change.kind == "start" and change.at == START + timedelta(days=60)
    assert change.confidence > 0.9
